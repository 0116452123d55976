"""/healthz, /readyz, /stats (the router's load signal), /metrics, request ids and the per-request log line."""

from __future__ import annotations

import json

import httpx
import pytest

from support.params import tts_params
from tts_common.schemas import WorkerStats

pytestmark = pytest.mark.process


def test_health_and_readiness(piper_worker):
    assert httpx.get(f"{piper_worker.url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{piper_worker.url}/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


def test_stats_follow_the_work(piper_worker):
    before = WorkerStats.model_validate(httpx.get(f"{piper_worker.url}/stats").json())
    assert before.engine == "piper" and before.device == "cpu" and before.sample_rate == 22050
    assert before.capacity == 10 and before.ready and not before.draining
    assert before.languages == ["auto", "en"]
    r = httpx.post(f"{piper_worker.url}/tts", json=tts_params(), timeout=60)
    assert r.status_code == 200
    after = WorkerStats.model_validate(httpx.get(f"{piper_worker.url}/stats").json())
    assert after.processed == before.processed + 1
    assert after.audio_seconds > before.audio_seconds
    assert after.average_processing_time > 0 and after.seconds_per_char > 0
    assert after.queue_depth == 0 and after.in_flight == 0


def test_metrics_count_requests(piper_worker):
    def scrape() -> str:
        r = httpx.get(f"{piper_worker.url}/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        return r.text

    def value(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = scrape()
    httpx.post(f"{piper_worker.url}/tts", json=tts_params(), timeout=60)
    httpx.post(f"{piper_worker.url}/tts", json=tts_params(text=""), timeout=60)
    after = scrape()
    ok, bad = 'ttsc_worker_requests_total{status="200"}', 'ttsc_worker_requests_total{status="400"}'
    assert value(after, ok) == value(before, ok) + 1
    assert value(after, bad) == value(before, bad) + 1
    assert value(after, "ttsc_worker_processing_seconds_count") == value(before, "ttsc_worker_processing_seconds_count") + 1
    for name in ("ttsc_worker_queue_wait_seconds_bucket", "ttsc_worker_queue_depth", "ttsc_worker_in_flight",
                 "ttsc_worker_capacity", "ttsc_worker_audio_seconds_total", "ttsc_worker_info"):
        assert name in after


def test_request_id_is_echoed_and_logged(piper_worker):
    r = httpx.post(f"{piper_worker.url}/tts", json=tts_params(), headers={"X-Request-ID": "abc-123.x"}, timeout=60)
    assert r.headers["x-request-id"] == "abc-123.x"
    generated = httpx.get(f"{piper_worker.url}/tts", params=tts_params(text=""))
    assert len(generated.headers["x-request-id"]) == 32
    bogus = httpx.get(f"{piper_worker.url}/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert bogus.headers["x-request-id"] != "bad id with spaces"
    lines = [json.loads(line) for line in piper_worker.log_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "abc-123.x"]
    assert len(mine) == 1
    entry = mine[0]
    assert entry["status"] == 200 and entry["worker"] and entry["outcome"] == "ok"
    assert entry["queue_wait_s"] >= 0 and entry["processing_s"] > 0 and entry["audio_s"] > 1
    failed = [line for line in lines if line.get("request_id") == generated.headers["x-request-id"]]
    assert failed[0]["status"] == 400 and failed[0]["note"] == "text is required"


def test_a_request_with_unicode_line_breaks_keeps_its_log_line_whole(piper_worker):
    """NEL, U+2028 and U+2029 in a client's field would split a JSON log line for line-based readers."""
    odd = "wav\x85x\u2028y\u2029z"
    r = httpx.post(f"{piper_worker.url}/tts", json=tts_params(media_type=odd), headers={"X-Request-ID": "odd-breaks"})
    assert r.status_code == 400
    lines = piper_worker.log_text().splitlines()
    mine = [line for line in lines if "odd-breaks" in line]
    assert len(mine) == 1 and json.loads(mine[0])["media_type"] == odd
    assert all(json.loads(line) for line in lines if line.startswith("{"))


def test_openapi_documents_the_contract(piper_worker):
    spec = httpx.get(f"{piper_worker.url}/openapi.json").json()
    for path in ("/tts", "/control", "/set_refer_audio", "/set_gpt_weights", "/set_sovits_weights", "/stats"):
        assert path in spec["paths"]
    get_params = {p["name"] for p in spec["paths"]["/tts"]["get"]["parameters"]}
    assert {"text", "text_lang", "ref_audio_path", "prompt_lang", "streaming_mode", "media_type"} <= get_params
