"""Schemathesis drives every documented route of a real worker, and of a router in front of it, with generated
input: never a server error, and every error answer carries a `message` (on OpenAI's /v1 routes, in OpenAI's envelope
`{"error": {"message", ...}}`)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.process


def fuzz(base_url: str, must_have: set[str]) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= must_have
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=base_url, timeout=60)
            assert response.status_code < 500, (case.method, case.path, case.query, case.body, response.text)
            if response.status_code >= 400:
                body = response.json()
                if case.path.startswith("/v1/"):
                    body = body.get("error") or {}
                assert isinstance(body.get("message"), str)

        check()


def test_no_worker_route_gives_a_server_error(piper_worker):
    fuzz(piper_worker.url, {"/tts", "/control", "/stats", "/set_gpt_weights", "/v1/audio/speech"})


@pytest.fixture
def router_in_front(piper_worker, spawn_router):
    return spawn_router(piper_worker)


def test_no_router_route_gives_a_server_error(router_in_front):
    fuzz(router_in_front.url, {"/tts", "/control", "/concurrent_stats", "/set_gpt_weights", "/v1/audio/speech"})
