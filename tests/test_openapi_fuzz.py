"""Schemathesis drives every documented route of a real worker with generated input: never a server error."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings


def test_no_documented_route_gives_a_server_error(piper_worker):
    schema = schemathesis.openapi.from_url(f"{piper_worker.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/tts", "/control", "/stats", "/set_gpt_weights"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=piper_worker.url, timeout=60)
            assert response.status_code < 500, (case.method, case.path, case.query, case.body, response.text)
            if response.status_code >= 400:
                assert isinstance(response.json().get("message"), str)

        check()
