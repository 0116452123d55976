"""The published JSON Schema of /concurrent_stats: generated from the router's model, no drift, and in agreement
with the contract's hand-written schema in ../shared when that folder sits beside the checkout."""

from __future__ import annotations

import json

import jsonschema
import pytest

from support.paths import SHARED_DOCS
from tts_router.pool import WorkerPool, WorkerState
from tts_router.stats import SCHEMA_PATH, RequestCounters, concurrent_stats, render_schema

pytestmark = pytest.mark.unit


def test_the_published_schema_is_generated_from_the_model():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), "run: python -m tts_router.stats"


def _sample() -> dict:
    pool = WorkerPool(client=None, poll_interval=1, stale_after=1, eject_after=3)  # type: ignore[arg-type]
    for url in ("http://a:1", "http://b:1", "http://c:1"):
        pool.workers[url] = WorkerState(url=url)
    return concurrent_stats(pool, RequestCounters(completed=7, failed=1)).model_dump(mode="json")


def test_what_the_router_answers_validates_and_the_schema_refuses_what_the_seed_forbids():
    schema = json.loads(SCHEMA_PATH.read_text())
    body = _sample()
    jsonschema.validate(body, schema)
    for bad in ({**body, "success_rate": 101}, {**body, "gpu_stats": {"gpu0": body["gpu_stats"]["0"]}},
                {**body, "queue_status": {"0": body["queue_status"]["gpu_0"]}}, {**body, "mode": "double"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


@pytest.mark.skipif(not (SHARED_DOCS / "concurrent_stats.schema.json").is_file(),
                    reason="no ../shared/docs beside the checkout: the contract's schema is not here to compare with")
def test_it_agrees_with_the_contract_schema():
    contract = json.loads((SHARED_DOCS / "concurrent_stats.schema.json").read_text())
    ours = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(_sample(), contract)
    assert set(contract["required"]) <= set(ours["required"])
    assert set(contract["properties"]) <= set(ours["properties"])
