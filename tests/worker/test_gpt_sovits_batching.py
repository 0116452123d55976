"""The gpt-sovits engine batching across requests, as real worker processes on generated weights: a worker started
with --batching --max-batch 4 steps its requests' T2S decoding together, and every request gets exactly the audio a
one-at-a-time worker (GPT-SoVITS's own TTS.run) gives it, whatever shares its steps: different texts, clips, prompt
lengths, streaming modes, voices and seeds; a client that leaves, a text with nothing to speak or a prompt too long
for the batch's cache ends that request alone."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
import yaml

from support.params import ADMIN_TOKEN
from support.wait import stats_when
from tts_cli.processes import ServiceProcess, start_worker

pytestmark = pytest.mark.process

RATE = 32000
BATCHING = ("--batching", "--max-batch", "4")


def write_clip(path: Path, seconds: float, f0: float, seed: int) -> None:
    """A voiced-like clip unlike the generated weights' ref.wav: another pitch, length and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(f0 + 35.0 * np.sin(2 * np.pi * 0.5 * t)) / RATE
    sig = sum(np.sin(k * phase) / k ** 1.3 for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t) ** 2)
    sig = sig + 0.04 * rng.standard_normal(t.shape)
    sf.write(str(path), (0.45 * sig / np.abs(sig).max() * 32767).astype(np.int16), RATE)


@pytest.fixture(scope="module")
def workers(gpt_sovits_weights: Path, tmp_path_factory: pytest.TempPathFactory,
            logs_dir: Path) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """(one-at-a-time worker, batching worker): the same weights, clips and catalog (alpha: tts_infer.yaml's pair,
    beta: the other generated pair)."""
    root = tmp_path_factory.mktemp("gsv-batching")
    voices = root / "voices"
    voices.mkdir()
    shutil.copy(gpt_sovits_weights / "w0" / "ref.wav", voices / "one.wav")  # 4 s
    write_clip(voices / "two.wav", 5.5, 210.0, seed=7)
    catalog = {"voices": [
        {"name": name, "gpt_sovits": {"gpt_weights": f"{w}/s1.ckpt", "sovits_weights": f"{w}/s2G.pth",
                                      "version": "v2", "ref_audio": clip, "prompt_text": "a test",
                                      "prompt_lang": "en"}}
        for name, w, clip in (("alpha", "w0", "one.wav"), ("beta", "w1", "two.wav"))]}
    (root / "voices.yaml").write_text(yaml.safe_dump(catalog))
    common = ["--engine", "gpt-sovits", "--tts-config", str(gpt_sovits_weights / "w0" / "tts_infer.yaml"),
              "--voice-dir", str(voices), "--num-warmup", "0", "--max-queue-size", "8",
              "--models-dir", str(gpt_sovits_weights), "--voices", str(root / "voices.yaml"),
              "--max-loaded-voices", "2"]
    env = {"NLTK_DATA": str(gpt_sovits_weights / "nltk_data"), "TTSC_ADMIN_TOKEN": ADMIN_TOKEN}
    solo = start_worker(common, logs_dir, env=env, ready_timeout=300)
    try:
        batch = start_worker([*common, *BATCHING], logs_dir, env=env, ready_timeout=300)
    except BaseException:
        solo.stop()
        raise
    yield solo, batch
    batch.stop()
    solo.stop()


def body(text: str, clip: str = "one.wav", prompt: str = "a test", **extra: object) -> dict[str, object]:
    params: dict[str, object] = {"text": text, "text_lang": "en", "ref_audio_path": clip, "prompt_text": prompt,
                                 "prompt_lang": "en", "top_k": 1, "seed": 42, "media_type": "raw"}
    params.update(extra)
    return params


def alone(url: str, bodies: list[dict[str, object]]) -> list[httpx.Response]:
    with httpx.Client(timeout=300) as client:
        return [client.post(f"{url}/tts", json=b) for b in bodies]


def _raw_get(port: int, params: dict[str, object]) -> socket.socket:
    """A request whose client can be made to leave mid-answer: close the socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    query = str(httpx.URL("/tts", params={k: str(v) for k, v in params.items()}))
    sock.sendall(f"GET {query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


async def _streamed(client: httpx.AsyncClient, url: str, b: dict[str, object]) -> tuple[int, list[bytes]]:
    async with client.stream("POST", f"{url}/tts", json=b) as r:
        return r.status_code, [c async for c in r.aiter_raw() if c]


def together(url: str, bodies: list[dict[str, object]], late: tuple[int, ...] = (),
             streamed: tuple[int, ...] = ()) -> tuple[list[Any], dict[str, Any]]:
    """All `bodies` at once (those in `late` once the batch has started, so they join it mid-decode; those in
    `streamed` read chunk by chunk), with the /stats seen while at least two of them shared the batch."""
    async def scenario() -> tuple[list[Any], dict[str, Any]]:
        async with httpx.AsyncClient(timeout=300) as client:
            def send(i: int) -> asyncio.Task[Any]:
                if i in streamed:
                    return asyncio.create_task(_streamed(client, url, bodies[i]))
                return asyncio.create_task(client.post(f"{url}/tts", json=bodies[i]))

            tasks = {i: send(i) for i in range(len(bodies)) if i not in late}
            seen = await asyncio.to_thread(stats_when, url, lambda s: s["batch_occupancy"] >= 2, 120)
            tasks.update({i: send(i) for i in late})
            return [await tasks[i] for i in range(len(bodies))], seen

    return asyncio.run(scenario())


def test_concurrent_greedy_requests_get_the_one_at_a_time_workers_audio(workers):
    solo, batch = workers
    bodies = [
        body("Hello world. This is a test."),
        body("The quick brown fox jumps over the lazy dog!", "two.wav",
             "a much longer transcript of the second reference clip", seed=7),
        body("Short one.", "two.wav", prompt="", seed=3),  # no prompt text: ref-free
        body("Batching shares every step. Each request keeps its own voice, and its own seed.",
             prompt="another prompt", seed=5, media_type="wav"),
    ]
    expected = alone(solo.url, bodies)
    assert [r.status_code for r in expected] == [200] * 4, [r.text for r in expected]
    assert len({r.content for r in expected}) == 4
    answers, seen = together(batch.url, bodies, late=(3,))
    assert seen["max_batch"] == 4 and seen["batch_occupancy"] >= 2  # they really shared the engine's steps
    for i, (got, want) in enumerate(zip(answers, expected, strict=True)):
        assert got.status_code == 200, got.text
        assert got.content == want.content, f"request {i}: batched audio differs from the one-at-a-time worker's"
    stats = stats_when(batch.url, lambda s: s["batch_occupancy"] == 0)
    assert stats["failed"] == 0 and stats["processed"] >= 4


def test_seeded_sampling_is_reproducible_whatever_shares_the_batch(workers):
    solo, batch = workers
    sampled = body("Sampling with a seed. It repeats itself.", "two.wav", top_k=15, top_p=0.9, temperature=0.9,
                   seed=1234)
    first = alone(batch.url, [sampled, {**sampled, "seed": 1235}])
    assert [r.status_code for r in first] == [200, 200]
    assert first[0].content != first[1].content  # it really samples: another seed, other audio
    companions = [body("A companion sentence, sampled too.", top_k=20, seed=99), body("Greedy company here."),
                  body("More company, on another clip. Two sentences.", "two.wav", prompt="", top_k=5, seed=8)]
    answers, _seen = together(batch.url, [*companions, sampled], late=(3,))
    assert [r.status_code for r in answers] == [200] * 4
    assert answers[3].content == first[0].content
    # and it is what the one-at-a-time worker (TTS.run, seeded the same way) gives
    assert alone(solo.url, [sampled])[0].content == first[0].content


def test_a_client_that_leaves_mid_batch_frees_its_place_and_the_others_finish(workers):
    solo, batch = workers
    bodies = [body("The first of three that stay."), body("The second stays, on the other clip.", "two.wav"),
              body("And the third one stays as well. It has two sentences.", prompt="")]
    expected = alone(solo.url, bodies)
    before = httpx.get(f"{batch.url}/stats").json()

    async def scenario() -> tuple[list[httpx.Response], dict[str, Any]]:
        async with httpx.AsyncClient(timeout=300) as client:
            staying = [asyncio.create_task(client.post(f"{batch.url}/tts", json=b)) for b in bodies]
            leaving = await asyncio.to_thread(_raw_get, batch.port, body("This one leaves. " * 4, "two.wav"))
            full = await asyncio.to_thread(stats_when, batch.url, lambda s: s["batch_occupancy"] == 4, 120)
            leaving.close()  # its client disconnects while it decodes in the batch
            return list(await asyncio.gather(*staying)), full

    answers, full = asyncio.run(scenario())
    assert full["batch_occupancy"] == 4
    for got, want in zip(answers, expected, strict=True):
        assert got.status_code == 200 and got.content == want.content
    stats = stats_when(batch.url, lambda s: s["batch_occupancy"] == 0 and s["cancelled"] == before["cancelled"] + 1)
    assert stats["processed"] == before["processed"] + 3 and stats["failed"] == before["failed"]


def test_bad_input_in_a_batch_fails_alone_as_it_would_alone(workers):
    solo, batch = workers
    good = [body("A good request before the bad ones."), body("Another good one. Fine.", "two.wav", seed=3)]
    nothing = body("...")
    long_prompt = body("Hello there.", prompt=" ".join(["the quick brown fox jumps over the lazy dog"] * 30))
    expected = alone(solo.url, [*good, nothing])
    assert expected[2].status_code == 400 and expected[2].json()["message"] == "tts failed"
    answers, _seen = together(batch.url, [good[0], nothing, long_prompt, good[1]], late=(1, 2))
    assert answers[0].content == expected[0].content and answers[3].content == expected[1].content
    # A text with nothing to speak: the same answer as the one-at-a-time worker's, reason included.
    assert answers[1].status_code == 400 and answers[1].json() == expected[2].json()
    # A prompt too long for a row of the batch's KV cache: that request's clear 400.
    r = answers[2]
    assert r.status_code == 400 and r.json()["message"] == "tts failed", r.text
    assert "does not fit a row of the batch's KV cache" in r.json()["Exception"]
    stats = stats_when(batch.url, lambda s: s["batch_occupancy"] == 0)
    assert stats["batch_occupancy"] == 0


def test_streaming_under_batching_gives_the_same_chunks(workers):
    solo, batch = workers
    text = "Streaming by sentence. Each one is sent when it is spoken. The last one too."
    by_sentence = body(text, streaming_mode=1, split_bucket=False)
    whole = body(text, split_bucket=False)  # mode 0 in text order: the same sentences with their pauses
    by_token = body("Token chunks stream as they are decoded. Then more.", "two.wav", streaming_mode=2)
    fixed = body("Fixed length chunks, without a prompt text.", prompt="", streaming_mode=3, min_chunk_length=8)
    bodies = [by_sentence, whole, by_token, fixed]
    expected = alone(solo.url, bodies)
    assert [r.status_code for r in expected] == [200] * 4
    answers, _seen = together(batch.url, bodies, streamed=(0, 2, 3))
    (code, chunks), whole_answer = answers[0], answers[1]
    assert code == 200 and len(chunks) >= 3  # one chunk per sentence at least
    assert b"".join(chunks) == expected[0].content == whole_answer.content == expected[1].content
    for (code, chunks), want in zip(answers[2:], expected[2:], strict=True):
        assert code == 200 and len(chunks) >= 2 and b"".join(chunks) == want.content
    pcm = np.frombuffer(b"".join(answers[0][1]), dtype="<i2")
    assert len(pcm) > RATE and np.abs(pcm).max() > 100


def test_catalog_voices_share_the_worker_each_with_its_own_weights(workers):
    solo, batch = workers

    def voiced(voice: str | None, text: str) -> dict[str, object]:
        b: dict[str, object] = {"text": text, "text_lang": "en", "top_k": 1, "seed": 42, "media_type": "raw"}
        if voice is None:
            b.update(ref_audio_path="one.wav", prompt_text="a test", prompt_lang="en")
        else:
            b["voice"] = voice
        return b

    bodies = [voiced(None, "The default voice speaks."), voiced("alpha", "The default voice speaks."),
              voiced("beta", "The other voice speaks, with its own weights."), voiced("beta", "Beta again.")]
    expected = alone(solo.url, bodies)
    assert [r.status_code for r in expected] == [200] * 4
    assert expected[0].content == expected[1].content  # alpha is tts_infer.yaml's pair with the same clip
    answers, _seen = together(batch.url, bodies)
    for i, (got, want) in enumerate(zip(answers, expected, strict=True)):
        assert got.status_code == 200 and got.content == want.content, f"request {i}"


def test_both_paths_count_the_same_decoded_tokens(workers):
    """/stats' decoded_tokens and decoding_seconds: the T2S stage's own work, counted alike one request at a time
    (upstream's decode, timed) and batched, so a benchmark can compare the stage's speed."""
    solo, batch = workers
    request = body("Counting tokens. Two sentences here.", media_type="wav", streaming_mode=1)
    counted = []
    for worker in (solo, batch):
        before = httpx.get(f"{worker.url}/stats").json()
        assert alone(worker.url, [request])[0].status_code == 200
        after = httpx.get(f"{worker.url}/stats").json()
        counted.append(after["decoded_tokens"] - before["decoded_tokens"])
        assert after["decoding_seconds"] > before["decoding_seconds"]
    # Greedy and seeded: the same tokens whichever path made them, except that upstream's decode reports the tokens
    # it keeps, one fewer than it made for a sentence stopped at the cap (kept_tokens), and the batch all it made.
    assert counted[0] > 0 and 0 <= counted[1] - counted[0] <= 2
