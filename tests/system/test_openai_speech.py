"""OpenAI's speech API with the real `openai` SDK as the client, against real worker and router processes: every
response format decoded (duration and rate), streaming chunk by chunk, SSE events as the SDK's users parse them,
and unknown voices, models and too long inputs in OpenAI's error envelope."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest
import yaml

from support.audio import decode, rms

pytestmark = pytest.mark.process

TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
RATE = 16000
# response_format -> (media type to decode as, the rate the answer has)
FORMATS = {"mp3": ("mp3", RATE), "opus": ("opus", 48000), "aac": ("aac", RATE), "flac": ("flac", RATE),
           "wav": ("wav", RATE), "pcm": ("raw", 24000)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, voice_dir, logs_dir):
    from tts_cli.processes import start_router, start_worker

    root = tmp_path_factory.mktemp("openai")
    catalog = root / "voices.yaml"
    catalog.write_text(yaml.safe_dump({"default": "narrator", "voices": [
        {"name": "narrator", "synthetic": {"tone_hz": 300}}, {"name": "bright", "synthetic": {"tone_hz": 900}}],
        "openai": {"voices": {"nova": "bright"}}}))
    workers = [start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--voices", str(catalog),
                             "--synthetic-sample-rate", str(RATE)], logs_dir) for _ in range(2)]
    router = start_router(["--poll-interval", "0.05", *[f for w in workers for f in ("--worker", w.url)]], logs_dir)
    yield workers, router
    router.stop()
    for w in workers:
        w.stop()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=f"{url}/v1", max_retries=0)


def tone(pcm, rate: int) -> float:
    import numpy as np

    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_decodes_through_the_router(cluster, fmt):
    _, router = cluster
    answer = client(router.url).audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format=fmt)
    media, rate = FORMATS[fmt]
    pcm, decoded_rate = decode(answer.content, media, rate)
    assert decoded_rate == rate
    assert 3.0 < len(pcm) / rate < 12.0 and rms(pcm) > 300  # about as long as speech of the text
    assert abs(tone(pcm, rate) - 300) < 10  # alloy has no alias: the catalog's default voice, narrator


def test_voices_map_through_aliases_names_and_objects(cluster):
    _, router = cluster
    sdk = client(router.url)
    for voice, hz in (("nova", 900), ("bright", 900), ("narrator", 300)):
        answer = sdk.audio.speech.create(model="gpt-4o-mini-tts", voice=voice, input="A tone.",
                                         response_format="pcm")
        pcm, _ = decode(answer.content, "raw", 24000)
        assert abs(tone(pcm, 24000) - hz) < 10, voice
    answer = sdk.audio.speech.create(model="tts-1", voice={"id": "bright"}, input="A tone.",  # type: ignore[arg-type]
                                     response_format="pcm")
    assert abs(tone(decode(answer.content, "raw", 24000)[0], 24000) - 900) < 10


def test_streaming_arrives_chunk_by_chunk(cluster):
    _, router = cluster
    with client(router.url).audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="pcm") as response:
        assert response.headers["content-type"] == "audio/pcm"
        chunks = [c for c in response.iter_bytes() if c]
    assert len(chunks) >= 2  # one per sentence at least, as they were made
    pcm, _ = decode(b"".join(chunks), "raw", 24000)
    assert 3.0 < len(pcm) / 24000 < 12.0


def test_sse_sends_base64_deltas_then_done(cluster):
    _, router = cluster
    with client(router.url).audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="pcm", stream_format="sse") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in response.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) >= 3
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] == len(TEXT)
    pcm, _ = decode(b"".join(base64.b64decode(e["audio"]) for e in events[:-1]), "raw", 24000)
    assert 3.0 < len(pcm) / 24000 < 12.0


def test_bad_requests_are_errors_in_openais_envelope(cluster):
    workers, router = cluster
    for url in (workers[0].url, router.url):
        sdk = client(url)
        with pytest.raises(openai.BadRequestError) as bad:
            sdk.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
        error = bad.value.body
        assert isinstance(error, dict) and error["param"] == "voice" and "alloy" in error["message"]
        assert "narrator" in error["message"] and error["type"] == "invalid_request_error"
        with pytest.raises(openai.BadRequestError) as bad:
            sdk.audio.speech.create(model="whisper-1", voice="alloy", input="Hi.")
        assert bad.value.body["param"] == "model" and "tts-1" in bad.value.body["message"]
        with pytest.raises(openai.BadRequestError) as bad:
            sdk.audio.speech.create(model="tts-1", voice="alloy", input="x" * 4097)
        assert bad.value.body["param"] == "input"
        with pytest.raises(openai.BadRequestError) as bad:
            sdk.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", speed=9)
        assert bad.value.body["param"] == "speed"


def test_an_oversized_body_is_413_in_openais_envelope(cluster):
    workers, router = cluster
    for url in (workers[0].url, router.url):
        r = httpx.post(f"{url}/v1/audio/speech", content=b'{"input": "' + b"x" * (2 << 20) + b'"}',
                       headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"]["message"] == "body: over the limit of 1048576 bytes"
        assert r.json()["error"]["type"] == "invalid_request_error"
        r = httpx.post(f"{url}/tts", content=b"x" * (2 << 20))  # api_v2's shape stays on /tts
        assert r.status_code == 413 and r.json() == {"message": "body: over the limit of 1048576 bytes"}


def test_models_and_voices_list(cluster):
    _, router = cluster
    sdk = client(router.url)
    assert {m.id for m in sdk.models.list()} == {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "tts-cluster"}
    voices = sdk.get("/audio/voices", cast_to=object)
    assert isinstance(voices, dict)
    ids = {v["id"]: v for v in voices["voices"]}
    assert {"narrator", "bright", "nova", "alloy"} <= set(ids)
    assert ids["nova"]["voice"] == "bright" and ids["alloy"]["voice"] == "narrator"
