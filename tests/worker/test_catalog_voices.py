"""Catalog voices on a real synthetic worker: each request gets the voice it names (told apart by tone), at most
`max_loaded_voices` are held (least recently used evicted), unknown voices are a 404 naming the catalog's, and a bad
catalog is refused at start and kept out at reload."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import yaml

from support.params import tts_params
from tts_cli.processes import start_worker

pytestmark = pytest.mark.process

RATE = 16000
CATALOG = {"voices": [{"name": "low", "synthetic": {"tone_hz": 200}},
                      {"name": "mid", "synthetic": {"tone_hz": 500}, "defaults": {"seed": 7}},
                      {"name": "high", "synthetic": {"tone_hz": 1000}}]}


def tone(raw: bytes) -> float:
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.fft.rfftfreq(len(pcm), 1 / RATE)[int(np.argmax(spectrum))])


@pytest.fixture
def catalog_worker(tmp_path, voice_dir, logs_dir):
    path = tmp_path / "voices.yaml"
    path.write_text(yaml.safe_dump(CATALOG))
    worker = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--voices", str(path),
                           "--max-loaded-voices", "2", "--synthetic-sample-rate", str(RATE)], logs_dir)
    yield worker, path
    worker.stop()


def say(url: str, **params: object) -> httpx.Response:
    return httpx.post(f"{url}/tts", json=tts_params(text="A tone.", media_type="raw", **params), timeout=30)


def test_each_request_gets_its_voice_and_the_default_is_unchanged(catalog_worker):
    worker, _ = catalog_worker
    for name, hz in (("low", 200), ("high", 1000), ("mid", 500)):
        r = say(worker.url, voice=name)
        assert r.status_code == 200 and abs(tone(r.content) - hz) < 5, (name, tone(r.content))
    plain = say(worker.url)  # no voice: the engine's own, as api_v2 serves
    assert plain.status_code == 200 and abs(tone(plain.content) - 220) < 5
    stats = httpx.get(f"{worker.url}/stats").json()
    assert stats["voices"] == ["low", "mid", "high"] and stats["max_loaded_voices"] == 2
    assert stats["loaded_voices"] == ["high", "mid"]  # low was evicted, least recently used
    assert set(stats["voice_load_seconds"]) == {"low", "mid", "high"}


def test_unknown_and_malformed_voices_are_clear_errors(catalog_worker):
    worker, _ = catalog_worker
    r = say(worker.url, voice="nobody")
    assert r.status_code == 404
    assert r.json() == {"message": "voice: 'nobody' is not in the voice catalog (low, mid, high)", "field": "voice"}
    r = say(worker.url, voice="x" * 64)
    assert r.status_code == 400 and r.json()["field"] == "voice"


def test_a_bad_catalog_change_keeps_the_last_good_one(catalog_worker):
    worker, path = catalog_worker
    path.write_text("voices: [unclosed\n")
    time.sleep(1.1)  # the worker looks at its file at most once a second
    assert say(worker.url, voice="low").status_code == 200
    assert "voice catalog change refused" in worker.log_text()
    path.write_text(yaml.safe_dump({"voices": [{"name": "solo", "synthetic": {"tone_hz": 700}}]}))
    time.sleep(1.1)
    r = say(worker.url, voice="solo")
    assert r.status_code == 200 and abs(tone(r.content) - 700) < 5
    assert say(worker.url, voice="low").status_code == 404


def test_placement_pins_voices_and_a_changed_voice_is_loaded_again(catalog_worker):
    worker, path = catalog_worker

    def stats() -> dict[str, object]:
        return httpx.get(f"{worker.url}/stats", timeout=10).json()

    assert abs(tone(say(worker.url, voice="high").content) - 1000) < 5
    changed = {"voices": [*CATALOG["voices"][:2], {"name": "high", "synthetic": {"tone_hz": 1500}}],
               "placement": {"another-worker": ["high"]}}
    path.write_text(yaml.safe_dump(changed))
    deadline = time.monotonic() + 10
    while "high" in stats()["loaded_voices"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "high" not in stats()["loaded_voices"]  # its definition changed: the held one is dropped
    assert stats()["pinned_voices"] == []  # the placement names another worker
    assert abs(tone(say(worker.url, voice="high").content) - 1500) < 5
    changed["placement"] = {stats()["worker_id"]: ["mid"]}
    path.write_text(yaml.safe_dump(changed))
    deadline = time.monotonic() + 10
    while "mid" not in stats()["loaded_voices"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stats()["pinned_voices"] == ["mid"] and "mid" in stats()["loaded_voices"]  # loaded without a request
    for name in ("low", "high", "low", "high"):  # two slots, mid pinned: low and high take turns in the other
        assert say(worker.url, voice=name).status_code == 200
    assert "mid" in stats()["loaded_voices"]


def test_voice_loads_are_counted_in_queued_work(tmp_path, voice_dir, logs_dir):
    path = tmp_path / "voices.yaml"
    path.write_text(yaml.safe_dump(CATALOG))
    worker = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--voices", str(path),
                           "--synthetic-voice-load-seconds", "2", "--synthetic-sample-rate", str(RATE)], logs_dir)
    try:
        import threading

        threads = [threading.Thread(target=say, args=(worker.url,), kwargs={"voice": v}) for v in ("low", "mid")]
        for t in threads:
            t.start()
        time.sleep(0.5)
        stats = httpx.get(f"{worker.url}/stats", timeout=10).json()
        # Two voices not held, 2 s each (the configured load time, none measured yet): at least 3 s of work queued,
        # where the text alone is a fraction of a second.
        assert stats["queued_work_seconds"] >= 3.0, stats
        assert stats["voices_loading"] in (["low"], ["mid"]) and set(stats["voices_queued"]) == {"low", "mid"}
        for t in threads:
            t.join()
        stats = httpx.get(f"{worker.url}/stats", timeout=10).json()
        assert stats["voice_loads"] == 2 and stats["voice_load_waits"] == 2 and stats["queued_work_seconds"] == 0
        assert stats["seconds_per_char"] < 0.1  # the loads did not count as synthesis time
    finally:
        worker.stop()


def test_a_bad_catalog_is_refused_at_start_naming_voice_and_field(tmp_path, voice_dir, logs_dir):
    path = tmp_path / "voices.yaml"
    path.write_text(yaml.safe_dump({"voices": [{"name": "Bad/Name", "synthetic": {}}]}))
    with pytest.raises(RuntimeError, match=r"voice 'Bad/Name': name"):
        start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--voices", str(path)], logs_dir)


def test_an_engine_without_catalog_voices_says_so(piper_worker):
    r = httpx.post(f"{piper_worker.url}/tts", json=tts_params(voice="low"), timeout=30)
    assert r.status_code == 404 and "none: no voice catalog" in r.json()["message"]


def test_the_router_passes_voice_through(catalog_worker, spawn_router):
    worker, _ = catalog_worker
    router = spawn_router(worker)
    r = say(router.url, voice="high")
    assert r.status_code == 200 and abs(tone(r.content) - 1000) < 5
    r = httpx.get(f"{router.url}/tts", params=tts_params(text="A tone.", media_type="raw", voice="low"), timeout=30)
    assert r.status_code == 200 and abs(tone(r.content) - 200) < 5
    assert say(router.url, voice="nobody").status_code == 404


def test_piper_serves_catalog_voices_from_the_models_directory(tmp_path, voice_dir, logs_dir):
    """A second Piper voice: the bundled model with its config's length_scale doubled (slower speech), so the
    two are told apart by length; deterministic, so each is compared with itself."""
    import json
    import shutil

    from tts_worker.engines.piper_engine import bundled_voice

    model = bundled_voice()
    models = tmp_path / "models"
    (models / "piper").mkdir(parents=True)
    shutil.copy(model, models / "piper" / "slow.onnx")
    config = json.loads(model.with_name(model.name + ".json").read_text())
    config["inference"]["length_scale"] = 2 * config["inference"].get("length_scale", 1.0)
    (models / "piper" / "slow.onnx.json").write_text(json.dumps(config))
    path = tmp_path / "voices.yaml"
    path.write_text(yaml.safe_dump({"voices": [{"name": "slow", "piper": {"model": "piper/slow.onnx"}},
                                               {"name": "gone", "piper": {"model": "piper/gone.onnx"}}]}))
    worker = start_worker(["--engine", "piper", "--voice-dir", str(voice_dir), "--voices", str(path),
                           "--models-dir", str(models), "--piper-deterministic", "--num-warmup", "0"], logs_dir)
    try:
        text = {"text": "Hello there, this is a test.", "text_lang": "en", "media_type": "raw"}
        plain = httpx.post(f"{worker.url}/tts", json={**text, "ref_audio_path": "reference.wav",
                                                      "prompt_lang": "en"}, timeout=60)
        slow = httpx.post(f"{worker.url}/tts", json={**text, "voice": "slow"}, timeout=60)
        assert plain.status_code == 200 and slow.status_code == 200, slow.text
        assert len(slow.content) > 1.6 * len(plain.content)  # twice the length scale: about twice the audio
        again = httpx.post(f"{worker.url}/tts", json={**text, "voice": "slow"}, timeout=60)
        assert again.content == slow.content
        r = httpx.post(f"{worker.url}/tts", json={**text, "voice": "gone"}, timeout=60)
        assert r.status_code == 503 and "piper/gone.onnx" in r.json()["message"]
        stats = httpx.get(f"{worker.url}/stats").json()
        assert stats["loaded_voices"] == ["slow"] and "gone" in stats["voice_errors"]
    finally:
        worker.stop()


def test_concurrent_mixed_voices_each_get_their_own(catalog_worker):
    """More voices asked at once than the worker holds (3 voices, 2 slots): every answer has its own voice's tone."""
    import asyncio

    worker, _ = catalog_worker
    order = ["low", "high", None, "mid", "low", "high", "mid", None, "low"]
    hz = {"low": 200, "mid": 500, "high": 1000, None: 220}

    async def mixed() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return list(await asyncio.gather(*(
                client.post(f"{worker.url}/tts", json=tts_params(text="A tone.", media_type="raw",
                                                                 **({"voice": v} if v else {})))
                for v in order)))

    answers = asyncio.run(mixed())
    assert [r.status_code for r in answers] == [200] * len(order)
    assert [abs(tone(r.content) - hz[v]) < 5 for v, r in zip(order, answers, strict=True)] == [True] * len(order)
