"""A batching worker, as a real process: several requests in the engine at once, each answered exactly as it would
be alone, a client that leaves ending only its own request, and the bounded queue beyond the batch as before."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from support.audio import decode
from support.params import tts_params
from support.wait import stats_when

pytestmark = pytest.mark.process

BATCHING = ("--batching", "--max-batch", "4", "--max-queue-size", "6", "--synthetic-base-seconds", "1.0")
RATE = 32000  # the synthetic engine's default


def test_four_requests_share_the_engine_and_the_queue_beyond_the_batch_still_refuses(spawn_worker):
    worker = spawn_worker(*BATCHING)
    whole, streamed = tts_params(), tts_params(streaming_mode=1, media_type="raw")
    with httpx.Client(timeout=60) as client:  # each request alone first: what every batched answer must equal
        alone = {"whole": client.post(f"{worker.url}/tts", json=whole),
                 "streamed": client.post(f"{worker.url}/tts", json=streamed)}
    assert [r.status_code for r in alone.values()] == [200, 200]

    async def scenario() -> tuple[list[httpx.Response], dict, list[httpx.Response]]:
        async with httpx.AsyncClient(timeout=60) as ac:
            bodies = [whole, streamed, whole, streamed, whole, whole]  # 4 into the engine, 2 wait in the queue
            admitted = [asyncio.create_task(ac.post(f"{worker.url}/tts", json=b)) for b in bodies]
            full = await asyncio.to_thread(stats_when, worker.url,
                                           lambda s: s["batch_occupancy"] == 4 and s["queue_depth"] == 2)
            overflow = await asyncio.gather(*(ac.post(f"{worker.url}/tts", json=whole) for _ in range(2)))
            return list(await asyncio.gather(*admitted)), full, list(overflow)

    done, full, overflow = asyncio.run(scenario())
    assert (full["max_batch"], full["in_flight"], full["capacity"]) == (4, 4, 6)
    for r in overflow:
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert "queue is full" in r.json()["message"]
    assert [r.status_code for r in done] == [200] * 6
    for r, kind in zip(done, ["whole", "streamed", "whole", "streamed", "whole", "whole"], strict=True):
        assert r.content == alone[kind].content, kind  # the same audio as alone, whoever shared its steps
    pcm, rate = decode(done[0].content, "wav", RATE)
    assert rate == RATE and len(pcm) > 2 * RATE  # seconds of speech-length audio, as alone
    # Streamed (mode 1), the one segment is followed by its fragment_interval of silence (0.3 s by default).
    assert len(decode(done[1].content, "raw", RATE)[0]) == len(pcm) + int(0.3 * RATE)
    stats = httpx.get(f"{worker.url}/stats").json()
    assert (stats["processed"], stats["rejected"], stats["batch_occupancy"]) == (8, 2, 0)
    assert stats["chars_per_second"] > 0
    metrics = httpx.get(f"{worker.url}/metrics").text
    assert 'ttsc_worker_batch_size_bucket{le="4.0"}' in metrics and "ttsc_worker_max_batch 4.0" in metrics


def _raw_get(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    query = str(httpx.URL("/tts", params=tts_params()))
    sock.sendall(f"GET {query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def test_a_client_that_leaves_mid_batch_ends_only_its_own_request(spawn_worker):
    worker = spawn_worker(*BATCHING)
    alone = httpx.post(f"{worker.url}/tts", json=tts_params(), timeout=60)
    assert alone.status_code == 200

    async def scenario() -> tuple[list[httpx.Response], dict]:
        async with httpx.AsyncClient(timeout=60) as ac:
            others = [asyncio.create_task(ac.post(f"{worker.url}/tts", json=tts_params())) for _ in range(3)]
            leaving = await asyncio.to_thread(_raw_get, worker.port)
            full = await asyncio.to_thread(stats_when, worker.url, lambda s: s["batch_occupancy"] == 4)
            leaving.close()  # its client disconnects while it is in the batch
            return list(await asyncio.gather(*others)), full

    done, full = asyncio.run(scenario())
    assert full["queue_depth"] == 0 and full["processed"] == 1
    assert [r.status_code for r in done] == [200, 200, 200]
    assert all(r.content == alone.content for r in done)
    stats = stats_when(worker.url, lambda s: s["batch_occupancy"] == 0 and s["cancelled"] == 1)
    assert (stats["processed"], stats["failed"]) == (4, 0)  # the one that left never got an answer
