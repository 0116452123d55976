"""The bounded queue: overload is a prompt 503 with Retry-After, admitted work still succeeds, nothing is wasted."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from support.params import tts_params
from support.wait import stats_when

pytestmark = pytest.mark.process


async def test_overflow_answers_503_with_retry_after_while_admitted_requests_succeed(spawn_worker):
    worker = spawn_worker("--max-queue-size", "3", "--synthetic-base-seconds", "0.6")
    async with httpx.AsyncClient(timeout=60) as client:
        admitted = [asyncio.create_task(client.post(f"{worker.url}/tts", json=tts_params())) for _ in range(3)]
        await asyncio.to_thread(stats_when, worker.url, lambda s: s["queue_depth"] + s["in_flight"] == 3)
        overflow = await asyncio.gather(*(client.post(f"{worker.url}/tts", json=tts_params()) for _ in range(4)))
        done = await asyncio.gather(*admitted)
    for r in overflow:
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert "queue is full" in r.json()["message"]
    assert [r.status_code for r in done] == [200, 200, 200]
    stats = httpx.get(f"{worker.url}/stats").json()
    assert stats["processed"] == 3 and stats["rejected"] == 4 and stats["capacity"] == 3


def test_retry_after_grows_with_the_work_admitted(spawn_worker):
    worker = spawn_worker("--max-queue-size", "1", "--synthetic-base-seconds", "2.5")
    with httpx.Client(timeout=60) as client:
        warm = client.post(f"{worker.url}/tts", json=tts_params())  # measures the service time
        assert warm.status_code == 200

        async def scenario() -> tuple[httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as ac:
                first = asyncio.create_task(ac.post(f"{worker.url}/tts", json=tts_params()))
                await asyncio.to_thread(stats_when, worker.url, lambda s: s["in_flight"] == 1)
                refused = await ac.post(f"{worker.url}/tts", json=tts_params())
                return await first, refused

        ok, refused = asyncio.run(scenario())
    assert ok.status_code == 200 and refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 3  # one admitted request x ~2.5 s, rounded up


def _raw_request(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def test_client_that_leaves_while_queued_loses_its_place(spawn_worker):
    worker = spawn_worker("--max-queue-size", "4", "--synthetic-base-seconds", "1.0")
    query = str(httpx.URL("/tts", params=tts_params()))
    busy = _raw_request(worker.port, query)
    stats_when(worker.url, lambda s: s["in_flight"] == 1)
    waiting = _raw_request(worker.port, query)
    stats_when(worker.url, lambda s: s["queue_depth"] == 1)
    waiting.close()  # leaves before the engine reaches it
    stats = stats_when(worker.url, lambda s: s["queue_depth"] == 0)
    assert stats["cancelled"] == 1
    busy.settimeout(30)
    assert busy.recv(64).startswith(b"HTTP/1.1 200")
    busy.close()
    stats = stats_when(worker.url, lambda s: s["in_flight"] == 0)
    assert stats["processed"] == 1  # the engine never ran the abandoned request
    assert stats["cancelled"] == 1


def test_request_timeout_answers_504_and_frees_the_engine(spawn_worker):
    worker = spawn_worker("--request-timeout", "0.5", "--synthetic-base-seconds", "5")
    r = httpx.post(f"{worker.url}/tts", json=tts_params(), timeout=60)
    assert r.status_code == 504
    assert "timed out after 0.5 s" in r.json()["message"]
    stats = stats_when(worker.url, lambda s: s["in_flight"] == 0, timeout=3)
    assert stats["failed"] == 1 and stats["processed"] == 0
