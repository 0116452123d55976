"""What real api_v2 clients rely on, against a real worker and a real router in front of it: the stream's framing
chunk for chunk, api_v2's tolerances (values it takes that a stricter server refuses), its error body shapes, a
rolling /control through the router, and the opt-in for unauthenticated admin calls."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import numpy as np
import pytest

from support.audio import decode
from support.http_chunks import request
from support.params import tts_params
from support.wait import eventually
from tts_cli.processes import ServiceProcess

pytestmark = pytest.mark.process

TWO_SENTENCES = "Hello there. This is a second sentence, a little longer than the first one."


@pytest.fixture(scope="module")
def routed(piper_worker: ServiceProcess, logs_dir) -> ServiceProcess:
    from tts_cli.processes import start_router

    router = start_router(["--poll-interval", "0.05", "--worker", piper_worker.url], logs_dir)
    yield router
    router.stop()


@pytest.mark.parametrize("media_type", ["wav", "raw", "ogg", "aac", "mp3", "opus", "flac"])
@pytest.mark.parametrize("mode", [1, 2, 3])
def test_the_router_keeps_the_workers_chunks(piper_worker, routed, media_type, mode):
    params = tts_params(text=TWO_SENTENCES, media_type=media_type, streaming_mode=mode)
    direct = request(f"{piper_worker.url}/tts", params)
    through = request(f"{routed.url}/tts", params)
    assert direct.status == through.status == 200
    assert direct.headers["transfer-encoding"] == through.headers["transfer-encoding"] == "chunked"
    assert len(direct.chunks) >= 2
    assert [len(c) for c in through.chunks] == [len(c) for c in direct.chunks]
    rate = int(through.headers["x-sample-rate"])
    if media_type in ("ogg", "opus"):  # each Ogg stream gets a random serial number: the same audio, not bytes
        for a, b in zip(direct.chunks, through.chunks, strict=True):
            assert np.array_equal(decode(a, media_type, rate)[0], decode(b, media_type, rate)[0])
    else:
        assert through.chunks == direct.chunks
    body = through.chunks[1:] if media_type == "wav" else through.chunks
    if media_type == "wav":
        assert len(through.chunks[0]) == 44 and through.chunks[0][:4] == b"RIFF"
    for chunk in body:  # every chunk on its own: whole int16 samples, or a decodable ogg/aac unit
        if media_type in ("wav", "raw"):
            assert len(chunk) % 2 == 0
        else:
            assert len(decode(chunk, media_type, rate)[0]) > 0


def _both(piper_worker: ServiceProcess, routed: ServiceProcess) -> list[str]:
    return [piper_worker.url, routed.url]


@pytest.mark.parametrize("aux", ["", [""], ["not-there.wav"], ["", "not-there.wav", "reference.wav"]])
def test_empty_and_missing_aux_refs_are_skipped_and_said(piper_worker, routed, aux):
    for url in _both(piper_worker, routed):
        r = httpx.post(f"{url}/tts", json=tts_params(aux_ref_audio_paths=aux), timeout=60)
        assert r.status_code == 200, r.text
        skipped = {"": None, "['']": "1", "['not-there.wav']": "1"}.get(str(aux), "2")  # "" is "none", as null
        assert r.headers.get("x-aux-refs-skipped") == skipped
    r = httpx.get(f"{routed.url}/tts", params={**tts_params(), "aux_ref_audio_paths": ""}, timeout=60)
    assert r.status_code == 200 and r.headers["x-aux-refs-skipped"] == "1"


def test_an_aux_ref_that_escapes_the_voice_dir_is_still_refused(piper_worker, routed):
    for url in _both(piper_worker, routed):
        r = httpx.post(f"{url}/tts", json=tts_params(aux_ref_audio_paths=["../../etc/passwd"]), timeout=60)
        assert r.status_code == 400 and "outside the voice directory" in r.json()["message"]


@pytest.mark.parametrize("field,value", [
    ("top_k", 0), ("top_p", 0), ("temperature", 0), ("batch_size", 0), ("repetition_penalty", 0),
    ("min_chunk_length", 0), ("temperature", 11), ("top_k", 1001), ("batch_size", 257), ("sample_steps", 129),
])
def test_values_api_v2_takes_are_taken(piper_worker, routed, field, value):
    for url in _both(piper_worker, routed):
        r = httpx.post(f"{url}/tts", json=tts_params(**{field: value}), timeout=60)
        assert r.status_code == 200, (url, r.text)
    # min_chunk_length 0 streams in pieces of one token's worth, as 1 does, not in one-sample chunks
    zero, one = (request(f"{routed.url}/tts", tts_params(text=TWO_SENTENCES, streaming_mode=2, min_chunk_length=n))
                 for n in (0, 1))
    assert zero.status == one.status == 200 and [len(c) for c in zero.chunks] == [len(c) for c in one.chunks]
    assert len(zero.chunks) < 200


def test_a_value_the_engine_cannot_use_is_tts_failed_not_500(piper_worker, routed):
    for url in _both(piper_worker, routed):
        r = httpx.post(f"{url}/tts", json=tts_params(speed_factor=0), timeout=60)
        assert r.status_code == 400 and r.json()["message"] == "tts failed"
        assert "speed_factor" in r.json()["Exception"]
        r = httpx.post(f"{url}/tts", json=tts_params(speed_factor=1e-6), timeout=60)  # hours of audio: refused first
        assert r.status_code == 400 and r.json()["field"] == "speed_factor"


def test_the_two_values_that_would_exhaust_a_worker_are_bounded(piper_worker, routed):
    for url in _both(piper_worker, routed):
        r = httpx.post(f"{url}/tts", json=tts_params(text="Hello.", streaming_mode=1, fragment_interval=200000),
                       timeout=30)  # 200000 s of silence after one sentence: 8.8 GB of PCM
        assert r.status_code == 400 and r.json()["field"] == "fragment_interval", r.text
        r = httpx.post(f"{url}/tts", json=tts_params(sample_steps=10**6), timeout=30)
        assert r.status_code == 400 and r.json()["field"] == "sample_steps", r.text


@pytest.mark.parametrize("word,streamed", [("yes", True), ("on", True), ("no", False), ("off", False)])
def test_streaming_mode_takes_pydantics_lax_booleans(piper_worker, routed, word, streamed):
    for url in _both(piper_worker, routed):
        for answer in (request(f"{url}/tts", tts_params(streaming_mode=word)),
                       request(f"{url}/tts", body=tts_params(streaming_mode=word))):
            assert answer.status == 200
            assert (answer.headers.get("transfer-encoding") == "chunked") is streamed


def test_post_without_content_type_is_read_as_json(piper_worker, routed):
    import json

    for url in _both(piper_worker, routed):
        r = httpx.post(f"{url}/tts", content=json.dumps(tts_params()).encode(), headers={"content-type": ""},
                       timeout=60)
        assert r.status_code == 200, r.text
        assert r.content[:4] == b"RIFF"


def test_get_reports_the_lower_cased_language_as_api_v2_does(piper_worker, routed):
    for url in _both(piper_worker, routed):
        r = httpx.get(f"{url}/tts", params=tts_params(text_lang="FR"), timeout=30)
        assert r.status_code == 400 and r.json()["message"].startswith("text_lang: fr is not supported")
        r = httpx.post(f"{url}/tts", json=tts_params(text_lang="FR"), timeout=30)  # api_v2's POST keeps the case
        assert r.status_code == 400 and r.json()["message"].startswith("text_lang: FR is not supported")


def test_404_and_405_carry_detail_as_well_as_message(piper_worker, routed):
    for url in _both(piper_worker, routed):
        missing = httpx.get(f"{url}/no-such-route", timeout=10)
        wrong = httpx.delete(f"{url}/tts", timeout=10)
        assert missing.status_code == 404 and missing.json() == {"message": "Not Found", "detail": "Not Found"}
        assert wrong.status_code == 405 and wrong.json()["detail"] == wrong.json()["message"]


# -- admin through the router ---------------------------------------------------------------------------------------

def _started(worker: ServiceProcess) -> float:
    """When the worker's current process started (a restart re-executes it under the same pid)."""
    return time.time() - float(httpx.get(f"{worker.url}/stats", timeout=5).json()["uptime_seconds"])


def test_control_restart_through_the_router_rolls_one_worker_at_a_time(spawn_worker, spawn_router):
    """Open admin (the opt-in, no token anywhere), as an api_v2 client calls it; traffic keeps being served."""
    workers = [spawn_worker("--allow-unauthenticated-admin", "--synthetic-base-seconds", "0.05") for _ in range(2)]
    router = spawn_router(*workers, args=("--allow-unauthenticated-admin",))
    assert "open to unauthenticated callers" in router.log_text()
    assert all("open to unauthenticated callers" in w.log_text() for w in workers)
    served: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                served[client.post(f"{router.url}/tts", json=tts_params(text="Still here.")).status_code] += 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        eventually(lambda: sum(served.values()) >= 5)
        called = time.time()
        r = httpx.get(f"{router.url}/control", params={"command": "restart"}, timeout=120)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert r.status_code == 200, r.text
    assert {w.url: r.json()["workers"][w.url]["status"] for w in workers} == {w.url: 200 for w in workers}
    started = [_started(w) for w in workers]
    assert all(t > called for t in started), "each worker runs a new process"
    assert served[200] >= 5 and set(served) == {200}, served  # nobody saw the restarts
    # the two restarts did not overlap: the first worker served again before the second was told
    assert abs(started[0] - started[1]) > 0.2


def test_control_through_the_router_names_the_valid_commands(spawn_worker, spawn_router):
    router = spawn_router(spawn_worker("--allow-unauthenticated-admin"), args=("--allow-unauthenticated-admin",))
    r = httpx.get(f"{router.url}/control", params={"command": "reboot"}, timeout=10)
    assert r.status_code == 400 and r.json() == {"message": "command: reboot is not supported (restart or exit)",
                                                 "field": "command"}
    r = httpx.get(f"{router.url}/control", timeout=10)
    assert r.status_code == 400 and r.json()["message"] == "command is required"


def test_admin_stays_closed_without_the_opt_in(spawn_worker, spawn_router):
    worker = spawn_worker()
    router = spawn_router(worker)
    for url in (worker.url, router.url):
        r = httpx.get(f"{url}/control", params={"command": "restart"}, timeout=10)
        assert r.status_code == 403
    assert "open to unauthenticated callers" not in router.log_text() + worker.log_text()
