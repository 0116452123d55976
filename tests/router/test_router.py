"""The router in front of real workers: the api_v2 contract passed through, cheap validation, ids, stats, admin."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

from support.params import ADMIN_TOKEN, tts_params
from tts_router.stats import SCHEMA_PATH

pytestmark = pytest.mark.process

SCHEMA = SCHEMA_PATH  # the project's own, generated from its model (tests/router/test_stats_schema.py)


@pytest.fixture(scope="module")
def stats_schema() -> dict:
    return json.loads(SCHEMA.read_text())


@pytest.fixture
def routed(piper_worker, spawn_router):
    return spawn_router(piper_worker, env={"TTSC_ROUTER_ADMIN_TOKEN": ADMIN_TOKEN})


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_audio_through_the_router_equals_direct(piper_worker, routed, method):
    params = tts_params(media_type="raw", speed_factor=1.1)
    if method == "GET":
        direct = httpx.get(f"{piper_worker.url}/tts", params=params, timeout=60)
        via = httpx.get(f"{routed.url}/tts", params=params, timeout=60)
    else:
        direct = httpx.post(f"{piper_worker.url}/tts", json=params, timeout=60)
        via = httpx.post(f"{routed.url}/tts", json=params, timeout=60)
    assert direct.status_code == via.status_code == 200
    assert via.content == direct.content
    for header in ("content-type", "x-sample-rate", "x-worker-id", "content-length"):
        assert via.headers[header] == direct.headers[header]
    assert via.headers["x-retries"] == "0"


def test_router_refuses_bad_requests_itself(piper_worker, routed):
    # Same ordered checks and messages as the worker, with the engine's facts from /stats; the worker never sees it.
    cases = [
        tts_params(ref_audio_path=""),
        tts_params(text_lang="zh"),
        tts_params(media_type="wma"),
        tts_params(top_k="abc"),
        tts_params(text="x" * 700),
    ]
    for i, params in enumerate(cases):
        rid = f"bad-request-{i}"
        direct = httpx.post(f"{piper_worker.url}/tts", json=params)
        via = httpx.post(f"{routed.url}/tts", json=params, headers={"X-Request-ID": rid})
        assert via.status_code == direct.status_code == 400
        assert via.json() == direct.json()
        assert rid not in piper_worker.log_text()


def test_worker_errors_pass_through_unchanged(piper_worker, routed):
    params = tts_params(ref_audio_path="../escape.wav")
    direct = httpx.get(f"{piper_worker.url}/tts", params=params)
    via = httpx.get(f"{routed.url}/tts", params=params)
    assert via.status_code == 400 and via.json() == direct.json()


def test_request_id_reaches_the_worker_and_both_logs(piper_worker, routed):
    r = httpx.post(f"{routed.url}/tts", json=tts_params(), headers={"X-Request-ID": "trace-me-42"}, timeout=60)
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-me-42"
    worker_lines = [json.loads(x) for x in piper_worker.log_text().splitlines() if "trace-me-42" in x]
    # The router writes its line once the body has been sent, which can be just after the client has it.
    for _ in range(100):
        router_lines = [json.loads(x) for x in routed.log_text().splitlines() if "trace-me-42" in x]
        if router_lines:
            break
        time.sleep(0.02)
    assert [line["status"] for line in worker_lines] == [200]
    assert [line["status"] for line in router_lines] == [200]
    assert router_lines[0]["worker_url"] == piper_worker.url
    assert router_lines[0]["worker"] == worker_lines[0]["worker"]  # one name for it on both sides
    generated = httpx.post(f"{routed.url}/tts", json=tts_params(), timeout=60).headers["x-request-id"]
    assert generated in piper_worker.log_text()


def test_concurrent_stats_has_the_seed_shape(piper_worker, routed, stats_schema):
    httpx.post(f"{routed.url}/tts", json=tts_params(), timeout=60)
    body = httpx.get(f"{routed.url}/concurrent_stats").json()
    jsonschema.validate(body, stats_schema)
    assert body["mode"] == "single" and body["gpu_count"] == 1
    assert body["completed_requests"] >= 1 and body["success_rate"] == 100.0
    assert body["workers"][0]["url"] == piper_worker.url and body["workers"][0]["engine"] == "piper"


def test_router_metrics(routed):
    httpx.post(f"{routed.url}/tts", json=tts_params(), timeout=60)
    text = httpx.get(f"{routed.url}/metrics").text
    for name in ("ttsc_router_requests_total", "ttsc_router_request_seconds_bucket",
                 "ttsc_router_upstream_seconds_bucket", "ttsc_router_time_to_first_byte_seconds_bucket",
                 "ttsc_router_retries_total", "ttsc_router_worker_queue_depth", "ttsc_router_worker_healthy",
                 "ttsc_router_healthy_workers 1.0"):
        assert name in text, name


def test_admin_fans_out_only_with_the_token(piper_worker, routed, spawn_worker):
    second = spawn_worker(env={"TTSC_ADMIN_TOKEN": ADMIN_TOKEN})
    router = routed
    # a router in front of two workers
    from tts_cli.processes import start_router

    both = start_router(
        ["--worker", piper_worker.url, "--worker", second.url], Path(router.log_path).parent,
        env={"TTSC_ROUTER_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    try:
        r = httpx.get(f"{both.url}/set_refer_audio", params={"refer_audio_path": "reference.wav"})
        assert r.status_code == 403
        r = httpx.get(f"{both.url}/set_refer_audio", params={"refer_audio_path": "reference.wav"},
                      headers={"Authorization": "Bearer nope"})
        assert r.status_code == 403
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        r = httpx.get(f"{both.url}/set_refer_audio", params={"refer_audio_path": "reference.wav"}, headers=auth)
        assert r.status_code == 200 and r.json()["message"] == "success"
        assert set(r.json()["workers"]) == {piper_worker.url, second.url}
        r = httpx.get(f"{both.url}/set_gpt_weights", params={"weights_path": "w.ckpt"}, headers=auth)
        # piper cannot switch weights: its refusal comes back, with every worker's answer
        assert r.status_code == 400 and r.json()["message"] == "change gpt weight failed"
        assert r.json()["workers"][piper_worker.url]["status"] == 400
    finally:
        both.stop()
