"""API keys and per-key quotas on real router and worker processes, with the real `openai` SDK as the client (and
httpx as an api_v2 client): a missing or wrong key is 401 in each API's error shape, a key over its rate or its
concurrency is 429 with a Retry-After the SDK's retry honours, counters and logs name the key's id and never the
key, a changed keys file takes effect and a bad one keeps the last good keys; then the same through
`tts-cluster up` with two workers, whose own ports are guarded too."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import httpx
import openai
import pytest
import yaml

from support.audio import decode, rms
from support.up import start_up
from support.wait import eventually

pytestmark = pytest.mark.process

KEY_A = "sk-team-a-0123456789abcdef"
KEY_SLOW = "sk-slow-0123456789abcdef"
KEY_SOLO = "sk-solo-0123456789abcdef"
KEY_NEW = "sk-rotated-0123456789abcdef"
RATE = 16000
TEXT = "The birch canoe slid on the smooth planks."
API_V2 = {"text": "Hello there.", "text_lang": "en", "ref_audio_path": "reference.wav", "prompt_lang": "en"}
# response_format -> (decoded as, rate) for the synthetic engine's default 32 kHz
UP_FORMATS = {"mp3": ("mp3", 32000), "opus": ("opus", 48000), "aac": ("aac", 32000), "flac": ("flac", 32000),
              "wav": ("wav", 32000), "pcm": ("raw", 24000)}
# Long enough that its stream is still open while the next request arrives (0.01 s per character on the worker).
LONG = " ".join(["Glue the sheet to the dark blue background."] * 12)


def keys_doc() -> dict[str, object]:
    return {"keys": [{"id": "team-a", "key": KEY_A},
                     {"id": "slow", "key": KEY_SLOW, "requests_per_second": 1, "burst": 1},
                     {"id": "solo", "key": KEY_SOLO, "max_concurrent": 1}]}


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    path.write_text(yaml.safe_dump(keys_doc()))
    return path


@pytest.fixture(scope="module")
def cluster(keys_file, voice_dir, logs_dir):
    """Kubernetes' layout: the router holds the keys; the workers, reached only through it, hold none."""
    from tts_cli.processes import start_router, start_worker

    workers = [start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--synthetic-sample-rate",
                             str(RATE), "--synthetic-seconds-per-char", "0.01"], logs_dir) for _ in range(2)]
    router = start_router(["--poll-interval", "0.05", "--api-keys-file", str(keys_file),
                           *[f for w in workers for f in ("--worker", w.url)]], logs_dir)
    yield workers, router
    router.stop()
    for w in workers:
        w.stop()


def sdk(url: str, key: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", max_retries=retries, api_key=key)


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{([^}}]*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            total += float(m.group(2))
    return total


def assert_refused_401(url: str, key: str | None) -> None:
    client = sdk(url, key or "unsent")
    # key None: the SDK sends no Authorization header at all
    omit = {"Authorization": openai.Omit()} if key is None else None
    with pytest.raises(openai.AuthenticationError) as refused:
        client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, extra_headers=omit)
    body = refused.value.body
    assert isinstance(body, dict) and body["code"] == "invalid_api_key" and body["type"] == "authentication_error"
    assert refused.value.response.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        client.models.list(extra_headers=omit)


def test_a_missing_or_wrong_key_is_401_in_openais_envelope(cluster):
    _, router = cluster
    assert_refused_401(router.url, None)
    assert_refused_401(router.url, "sk-not-a-key-0123456789")
    answer = sdk(router.url, KEY_A).audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                                        response_format="flac")
    pcm, rate = decode(answer.content, "flac", RATE)
    assert rate == RATE and len(pcm) / rate > 1.0 and rms(pcm) > 300
    assert {m.id for m in sdk(router.url, KEY_A).models.list()} >= {"tts-1"}


def test_api_v2_clients_send_the_key_as_a_bearer_token(cluster):
    _, router = cluster
    r = httpx.post(f"{router.url}/tts", json=API_V2)
    assert r.status_code == 401 and r.json() == {"message": "API key missing: send Authorization: Bearer <key>",
                                                 "field": "Authorization"}
    r = httpx.get(f"{router.url}/tts", params=API_V2, headers={"Authorization": "Bearer sk-wrong-0123456789abc"})
    assert r.status_code == 401 and r.json()["message"] == "API key not valid"
    r = httpx.get(f"{router.url}/tts", params=API_V2, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    assert r.status_code == 200 and r.content[:4] == b"RIFF"
    for path in ("/healthz", "/readyz", "/metrics", "/concurrent_stats"):  # monitoring needs no key
        assert httpx.get(f"{router.url}{path}").status_code == 200, path


def test_a_key_over_its_rate_gets_429_and_the_sdks_retry_honours_retry_after(cluster):
    _, router = cluster
    refused_before = metric(router.url, "ttsc_router_key_requests_total", key="slow", status="429")
    strict = sdk(router.url, KEY_SLOW)
    strict.audio.speech.create(model="tts-1", voice="alloy", input="One.", response_format="wav")
    with pytest.raises(openai.RateLimitError) as over:
        strict.audio.speech.create(model="tts-1", voice="alloy", input="Two.", response_format="wav")
    assert over.value.response.headers["retry-after"] == "1"
    assert over.value.body["code"] == "rate_limit_exceeded" and "1 requests/s" in over.value.body["message"]
    # With retries, the SDK waits what Retry-After says: each call right after another gets one 429, then its
    # retry is in quota (a retry sooner, as the SDK's own backoff of about 0.5 s would be, is refused again).
    patient = sdk(router.url, KEY_SLOW, retries=3)
    patient.audio.speech.create(model="tts-1", voice="alloy", input="Three.", response_format="wav")
    answer = patient.audio.speech.create(model="tts-1", voice="alloy", input="Four.", response_format="wav")
    assert answer.content[:4] == b"RIFF"
    assert metric(router.url, "ttsc_router_key_requests_total", key="slow", status="429") - refused_before == 3


def test_a_key_over_its_concurrency_gets_429_until_its_stream_ends(cluster):
    _, router = cluster
    client = sdk(router.url, KEY_SOLO)
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=LONG,
                                                            response_format="pcm") as streaming:
        chunks = streaming.iter_bytes()  # held: a dropped iterator would close the stream
        first = next(chunks)
        with pytest.raises(openai.RateLimitError) as over:
            client.audio.speech.create(model="tts-1", voice="alloy", input="Meanwhile.")
        assert over.value.response.headers["retry-after"] == "1" and "max_concurrent" in over.value.body["message"]
        r = httpx.post(f"{router.url}/tts", json=API_V2, headers={"Authorization": f"Bearer {KEY_SOLO}"})
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and "max_concurrent" in r.json()["message"]
        rest = b"".join(chunks)
    assert len(first + rest) / 2 / 24000 > 10  # the long stream itself was not cut
    answer = client.audio.speech.create(model="tts-1", voice="alloy", input="Now.", response_format="wav")
    assert answer.content[:4] == b"RIFF"  # its slot came back when the stream ended


def test_counters_and_logs_name_the_key_id_and_never_the_key(cluster):
    workers, router = cluster
    before = metric(router.url, "ttsc_router_key_requests_total", key="team-a", status="200")
    audio_before = sum(metric(w.url, "ttsc_worker_key_audio_seconds_total", key="team-a") for w in workers)
    r = httpx.post(f"{router.url}/tts", json={**API_V2, "text": TEXT}, headers={"Authorization": f"Bearer {KEY_A}",
                                                                               "X-Request-ID": "keyed-req-1"},
                   timeout=30)
    assert r.status_code == 200
    seconds = len(decode(r.content, "wav", RATE)[0]) / RATE
    assert metric(router.url, "ttsc_router_key_requests_total", key="team-a", status="200") == before + 1
    # The worker counts the audio by the id the router sent with it.
    audio = eventually(lambda: sum(metric(w.url, "ttsc_worker_key_audio_seconds_total", key="team-a")
                                   for w in workers) - audio_before)
    assert abs(audio - seconds) < 0.01
    assert metric(router.url, "ttsc_router_key_requests_total", key="none", status="401") >= 1
    lines = [line for line in router.log_text().splitlines() if "keyed-req-1" in line]
    assert lines and all('"key": "team-a"' in line for line in lines)
    for process in (router, *workers):
        text = process.log_text()
        assert all(k not in text for k in (KEY_A, KEY_SLOW, KEY_SOLO)), "a key reached a log"


def test_a_changed_keys_file_takes_effect_and_a_bad_one_keeps_the_last_good(cluster, tmp_path, spawn_router):
    workers, _ = cluster
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [{"id": "old", "key": KEY_A}]}))
    router = spawn_router(*workers, args=("--api-keys-file", str(path)))

    def status(key: str) -> int:
        return httpx.post(f"{router.url}/tts", json=API_V2, headers={"Authorization": f"Bearer {key}"},
                          timeout=30).status_code

    assert status(KEY_A) == 200 and status(KEY_NEW) == 401
    path.write_text(yaml.safe_dump({"keys": [{"id": "new", "key": KEY_NEW}]}))  # a rotated Secret
    eventually(lambda: status(KEY_NEW) == 200)
    assert status(KEY_A) == 401
    path.write_text("keys:\n  - {id: broken, key: short}\n")
    eventually(lambda: "API keys file refused" in router.log_text())
    assert status(KEY_NEW) == 200
    assert "short" not in router.log_text().split("API keys file refused", 1)[1].split("\n", 1)[0]


def test_a_bad_keys_file_stops_the_router_before_it_serves(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [{"id": "a", "key": "too-short"}]}))
    done = subprocess.run([sys.executable, "-m", "tts_cli", "router", "--worker", "http://127.0.0.1:9",
                           "--api-keys-file", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "key 'a': key" in done.stderr and "16 characters" in done.stderr and "too-short" not in done.stderr


def test_the_same_through_tts_cluster_up_with_two_workers(tmp_path, voice_dir, keys_file):
    proc, url = start_up(tmp_path, "--workers", "2", "--engine", "synthetic", "--voice-dir", str(voice_dir),
                         "--api-keys-file", str(keys_file))
    try:
        eventually(lambda: httpx.get(f"{url}/concurrent_stats").json()["mode"] == "concurrent")
        assert_refused_401(url, None)
        assert_refused_401(url, "sk-not-a-key-0123456789")
        client = sdk(url, KEY_A)
        for fmt, (media, rate) in UP_FORMATS.items():
            answer = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format=fmt)
            pcm, decoded_rate = decode(answer.content, media, rate)
            assert decoded_rate == rate and len(pcm) / rate > 1.0 and rms(pcm) > 300, fmt
        with client.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=f"{TEXT} {TEXT}", response_format="pcm") as response:
            chunks = [c for c in response.iter_bytes() if c]
        assert len(chunks) >= 2 and len(decode(b"".join(chunks), "raw", 24000)[0]) / 24000 > 2.0
        with client.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=TEXT, response_format="wav", stream_format="sse") as response:
            events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1]["type"] == "speech.audio.done" and {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
        for bad, param in (({"voice": "nobody"}, "voice"), ({"model": "whisper-1"}, "model"),
                           ({"input": "x" * 4097}, "input")):
            with pytest.raises(openai.BadRequestError) as refused:
                client.audio.speech.create(**{"model": "tts-1", "voice": "alloy", "input": "Hi.", **bad})
            assert refused.value.body["param"] == param
        strict = sdk(url, KEY_SLOW)
        strict.audio.speech.create(model="tts-1", voice="alloy", input="One.", response_format="wav")
        with pytest.raises(openai.RateLimitError) as over:
            strict.audio.speech.create(model="tts-1", voice="alloy", input="Two.", response_format="wav")
        assert over.value.response.headers["retry-after"] == "1"
        assert sdk(url, KEY_SLOW, retries=3).audio.speech.create(
            model="tts-1", voice="alloy", input="Three.", response_format="wav").content[:4] == b"RIFF"
        # Every worker has the keys too: its own port is no way around them.
        for worker in httpx.get(f"{url}/concurrent_stats").json()["workers"]:
            assert httpx.post(f"{worker['url']}/tts", json=API_V2).status_code == 401
            assert_refused_401(worker["url"], None)
            # ... but the limits are the router's alone: a worker never spends a key's quota a second time.
            slow = {"Authorization": f"Bearer {KEY_SLOW}"}
            assert [httpx.post(f"{worker['url']}/tts", json=API_V2, headers=slow, timeout=30).status_code
                    for _ in range(3)] == [200, 200, 200]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    printed = (tmp_path / "up.log").read_text()
    assert 'curl -H "Authorization: Bearer $TTS_API_KEY" -o hello.wav' in printed  # its example sends a key
    assert all(k not in printed for k in (KEY_A, KEY_SLOW, KEY_SOLO))


def test_up_refuses_a_bad_keys_file_before_starting_anything(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n  - {id: a, key: sk-0123456789abcdef, max_concurrent: 0}\n")
    done = subprocess.run([sys.executable, "-m", "tts_cli", "up", "--engine", "synthetic", "--api-keys-file",
                           str(path)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and "key 'a': max_concurrent" in done.stdout + done.stderr

