"""Audio answers: every media type decodes to speech at the engine's rate; streaming is a header then PCM."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from support.audio import decode, parse_wav_header, rms
from support.params import tts_params

pytestmark = pytest.mark.process

TWO_SENTENCES = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


def test_wav_is_speech_at_the_voice_rate(piper_worker):
    r = httpx.get(f"{piper_worker.url}/tts", params=tts_params(text=TWO_SENTENCES), timeout=60)
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/wav"
    pcm, rate = decode(r.content, "wav", 0)
    assert rate == 22050 == int(r.headers["x-sample-rate"])
    seconds = len(pcm) / rate
    assert 3.0 < seconds < 12.0  # two spoken sentences, not a click and not a minute
    assert rms(pcm) > 500  # not silence
    # speech has pauses and syllables: loudness varies a lot between 50 ms windows
    windows = pcm[: len(pcm) // 1102 * 1102].reshape(-1, 1102).astype(np.float64)
    loudness = np.sqrt((windows**2).mean(axis=1))
    assert loudness.max() > 8 * max(1.0, np.percentile(loudness, 10))


@pytest.mark.parametrize("media_type", ["wav", "raw", "ogg", "aac"])
def test_every_media_type_decodes(piper_worker, media_type):
    r = httpx.post(f"{piper_worker.url}/tts", json=tts_params(media_type=media_type), timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"audio/{media_type}"
    rate = int(r.headers["x-sample-rate"])
    pcm, decoded_rate = decode(r.content, media_type, rate)
    assert decoded_rate == rate == 22050
    assert 1.5 < len(pcm) / rate < 8
    assert rms(pcm) > 300


def test_get_and_post_reach_the_engine_identically(piper_worker):
    # Deterministic Piper (zero noise scales): the same parameters give the same bytes by either method.
    params = tts_params(text=TWO_SENTENCES, speed_factor=1.2, fragment_interval=0.2, media_type="raw")
    a = httpx.get(f"{piper_worker.url}/tts", params=params, timeout=60)
    b = httpx.post(f"{piper_worker.url}/tts", json=params, timeout=60)
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    c = httpx.post(f"{piper_worker.url}/tts", json={**params, "speed_factor": 1.0}, timeout=60)
    assert c.content != a.content  # and the parameters do reach it


def test_speed_factor_and_fragment_interval_shape_the_audio(piper_worker):
    def samples(**kw: object) -> int:
        r = httpx.post(f"{piper_worker.url}/tts", json=tts_params(text=TWO_SENTENCES, media_type="raw", **kw))
        assert r.status_code == 200
        return len(r.content) // 2

    base = samples(fragment_interval=0.0)
    assert samples(fragment_interval=1.0) - base == 22050  # exactly one second between the two segments
    assert samples(fragment_interval=0.0, speed_factor=2.0) < 0.7 * base


@pytest.mark.parametrize("mode", [True, 1, 2, 3, "true", "2"])
def test_wav_stream_is_header_then_pcm(piper_worker, mode):
    chunks: list[bytes] = []
    with httpx.stream(
        "POST", f"{piper_worker.url}/tts", json=tts_params(text=TWO_SENTENCES, streaming_mode=mode), timeout=60
    ) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.headers["x-sample-rate"] == "22050"
        chunks = list(r.iter_raw())
    body = b"".join(chunks)
    header = parse_wav_header(body[:44])
    assert header == {"format": 1, "channels": 1, "rate": 22050, "bits": 16, "data_size": 0}
    pcm = np.frombuffer(body[44:], dtype="<i2")
    assert len(pcm) / 22050 > 3.0 and rms(pcm) > 500
    assert len(chunks) >= 2


@pytest.mark.parametrize("media_type", ["raw", "ogg", "aac"])
def test_other_media_types_stream(piper_worker, media_type):
    with httpx.stream(
        "GET", f"{piper_worker.url}/tts", params=tts_params(streaming_mode=1, media_type=media_type), timeout=60
    ) as r:
        assert r.status_code == 200
        assert r.headers["x-sample-rate"] == "22050"
        body = r.read()
    pcm, rate = decode(body, media_type, 22050)
    assert rate == 22050 and rms(pcm) > 300


def test_stream_arrives_before_synthesis_ends(spawn_worker):
    # Three segments of 0.6 s engine time each: the first PCM must arrive while the engine is still busy.
    worker = spawn_worker("--synthetic-base-seconds", "0", "--synthetic-seconds-per-char", "0.05")
    text = "First part here. Second part here. Third part here."
    with httpx.stream("POST", f"{worker.url}/tts", json=tts_params(text=text, streaming_mode=1), timeout=60) as r:
        stream = r.iter_raw()
        first = next(stream)
        while len(first) <= 44:  # the header may come alone
            first += next(stream)
        busy = httpx.get(f"{worker.url}/stats").json()
        rest = b"".join(stream)
    assert busy["in_flight"] == 1 and busy["processed"] == 0
    assert len(first) > 44 and len(rest) > 0
    stats = httpx.get(f"{worker.url}/stats").json()
    assert stats["processed"] == 1
    assert stats["sample_rate"] == 32000


def test_client_leaving_mid_stream_stops_the_engine(spawn_worker):
    worker = spawn_worker("--synthetic-base-seconds", "0", "--synthetic-seconds-per-char", "0.05")
    text = " ".join(f"Segment number {i} is here." for i in range(10))  # ~13 s of engine time
    with httpx.stream("POST", f"{worker.url}/tts", json=tts_params(text=text, streaming_mode=1), timeout=60) as r:
        next(r.iter_raw())
    # The engine notices between chunks and frees itself long before the 13 s the text would take.
    for _ in range(100):
        stats = httpx.get(f"{worker.url}/stats").json()
        if stats["in_flight"] == 0:
            break
        time.sleep(0.1)
    assert stats["in_flight"] == 0
    assert stats["cancelled"] == 1 and stats["processed"] == 0


BEYOND_API_V2 = {"mp3": ("audio/mpeg", 22050), "opus": ("audio/opus", 48000), "flac": ("audio/flac", 22050)}


@pytest.mark.parametrize("media_type", sorted(BEYOND_API_V2))
def test_mp3_opus_and_flac_whole_and_every_streamed_chunk_decode(piper_worker, media_type):
    """Beyond api_v2's four, encoded in-process with PyAV; opus at the 48 kHz it fixes (X-Sample-Rate says so)."""
    from support.http_chunks import request

    content_type, rate = BEYOND_API_V2[media_type]
    r = httpx.post(f"{piper_worker.url}/tts", json=tts_params(text=TWO_SENTENCES, media_type=media_type,
                                                               fragment_interval=0), timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == content_type, r.text
    assert int(r.headers["x-sample-rate"]) == rate
    whole, decoded_rate = decode(r.content, media_type, rate)
    assert decoded_rate == rate and 3.0 < len(whole) / rate < 12.0 and rms(whole) > 300
    streamed = request(f"{piper_worker.url}/tts", body=tts_params(text=TWO_SENTENCES, media_type=media_type,
                                                                   streaming_mode=1, fragment_interval=0))
    assert streamed.status == 200 and len(streamed.chunks) == 2  # one per sentence, each a file of its own
    seconds = 0.0
    for chunk in streamed.chunks:
        pcm, chunk_rate = decode(chunk, media_type, rate)
        assert chunk_rate == rate and rms(pcm) > 300
        seconds += len(pcm) / rate
    assert abs(seconds - len(whole) / rate) < 0.1  # the same speech, cut in two (codec padding aside)
