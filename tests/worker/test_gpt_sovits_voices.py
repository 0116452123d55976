"""Catalog voices on the real GPT-SoVITS pipeline: two generated model pairs held by one worker beside the default
(tts_infer.yaml's), each request's audio the same under concurrent mixed traffic as its voice alone, a voice missing
its weights answered 503 naming the file, and never half-loaded."""

from __future__ import annotations

import asyncio
import shutil

import httpx
import pytest
import yaml

from support.params import ADMIN_TOKEN
from tts_cli.processes import start_worker

pytestmark = pytest.mark.process

TEXT = "Hello world. This is a test."


def catalog(weights):  # paths relative to the models directory (the generated weights' root)
    def pair(name: str, seed: str) -> dict[str, object]:
        return {"name": name, "gpt_sovits": {"gpt_weights": f"{seed}/s1.ckpt", "sovits_weights": f"{seed}/s2G.pth",
                                             "version": "v2", "ref_audio": f"{seed}-ref.wav",
                                             "prompt_text": "a test", "prompt_lang": "en"}}
    broken = pair("broken", "w1")
    broken["gpt_sovits"]["gpt_weights"] = "w1/missing.ckpt"
    wrong = pair("wrong-version", "w1")
    wrong["gpt_sovits"]["version"] = "v4"
    half = pair("half", "w1")  # its GPT weights load, then its "SoVITS weights" (a wav file) do not
    half["gpt_sovits"]["sovits_weights"] = "w1/ref.wav"
    return {"voices": [pair("alpha", "w0"), pair("beta", "w1"), broken, wrong, half]}


@pytest.fixture(scope="module")
def voices_worker(gpt_sovits_weights, tmp_path_factory, logs_dir):
    root = tmp_path_factory.mktemp("gsv-voices")
    voice_dir = root / "voices"
    voice_dir.mkdir()
    for seed in ("w0", "w1"):
        shutil.copy(gpt_sovits_weights / seed / "ref.wav", voice_dir / f"{seed}-ref.wav")
    path = root / "voices.yaml"
    path.write_text(yaml.safe_dump(catalog(gpt_sovits_weights)))
    # One catalog voice held at a time: mixed traffic must swap pairs between requests, the hardest case.
    worker = start_worker(
        ["--engine", "gpt-sovits", "--tts-config", str(gpt_sovits_weights / "w0" / "tts_infer.yaml"),
         "--voice-dir", str(voice_dir), "--num-warmup", "0", "--max-queue-size", "8", "--voices", str(path),
         "--max-loaded-voices", "1", "--models-dir", str(gpt_sovits_weights)],
        logs_dir, env={"NLTK_DATA": str(gpt_sovits_weights / "nltk_data"), "TTSC_ADMIN_TOKEN": ADMIN_TOKEN},
        ready_timeout=300,
    )
    yield worker
    worker.stop()


def body(voice: str | None) -> dict[str, object]:
    params: dict[str, object] = {"text": TEXT, "text_lang": "en", "seed": 42, "media_type": "raw"}
    if voice is None:  # api_v2's own request: the default voice with the reference it names
        params.update(ref_audio_path="w0-ref.wav", prompt_text="a test", prompt_lang="en")
    else:
        params["voice"] = voice
    return params


def test_each_request_gets_its_voice_alone_and_under_concurrent_mixed_traffic(voices_worker):
    url = voices_worker.url
    alone = {}
    for voice in (None, "alpha", "beta"):
        r = httpx.post(f"{url}/tts", json=body(voice), timeout=120)
        assert r.status_code == 200, r.text
        alone[voice] = r.content
    assert alone["alpha"] != alone["beta"]  # two pairs: two voices
    # alpha is tts_infer.yaml's pair with the same clip: a client naming no voice gets what api_v2 gives.
    assert alone[None] == alone["alpha"]

    order = ["beta", None, "alpha", "beta", "alpha", None, "beta"]

    async def mixed() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=300) as client:
            return list(await asyncio.gather(*(client.post(f"{url}/tts", json=body(v)) for v in order)))

    answers = asyncio.run(mixed())
    for voice, r in zip(order, answers, strict=True):
        assert r.status_code == 200, r.text
        assert r.content == alone[voice], f"voice {voice} differs from its own audio under mixed traffic"
    stats = httpx.get(f"{url}/stats", timeout=10).json()
    assert stats["max_loaded_voices"] == 1 and len(stats["loaded_voices"]) == 1
    assert stats["voice_loads"] >= 4  # alpha and beta evicted each other: every switch was a load
    assert set(stats["voice_load_seconds"]) >= {"alpha", "beta"}
    assert stats["voice_load_waits"] >= 4


def test_a_voice_whose_weights_are_missing_or_of_another_version_is_unavailable_naming_why(voices_worker):
    url = voices_worker.url
    before = {v: httpx.post(f"{url}/tts", json=body(v), timeout=120).content for v in (None, "beta")}
    r = httpx.post(f"{url}/tts", json=body("half"), timeout=120)
    assert r.status_code == 503 and "voice 'half'" in r.json()["message"], r.text
    r = httpx.post(f"{url}/tts", json=body("broken"), timeout=120)
    assert r.status_code == 503 and r.headers["Retry-After"], r.text
    assert "missing.ckpt" in r.json()["message"] and "gpt_sovits.gpt_weights" in r.json()["message"]
    r = httpx.post(f"{url}/tts", json=body("wrong-version"), timeout=120)
    assert r.status_code == 503, r.text
    assert "gpt_sovits.version" in r.json()["message"] and "v4" in r.json()["message"]
    stats = httpx.get(f"{url}/stats", timeout=10).json()
    assert "missing.ckpt" in stats["voice_errors"]["broken"]
    assert "wrong-version" in stats["voice_errors"]
    assert "broken" not in stats["loaded_voices"] and "wrong-version" not in stats["loaded_voices"]
    assert "half" in stats["voice_errors"] and "half" not in stats["loaded_voices"]
    # Nothing half-loaded: the default voice and a good voice speak exactly as before the failures.
    for voice in (None, "beta"):
        r = httpx.post(f"{url}/tts", json=body(voice), timeout=120)
        assert r.status_code == 200 and r.content == before[voice], r.text
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'ttsc_worker_voice_load_seconds_count{result="error",voice="broken"}' in metrics
    assert "ttsc_worker_loaded_voices 1.0" in metrics
