"""SIGTERM drains: readiness drops at once, new work is refused with 503, admitted work finishes, exit code 0."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from support.params import tts_params
from support.wait import stats_when

pytestmark = pytest.mark.process


async def test_sigterm_drains_without_losing_an_admitted_request(spawn_worker):
    worker = spawn_worker("--max-queue-size", "4", "--synthetic-base-seconds", "0.5", "--drain-timeout", "30")
    async with httpx.AsyncClient(timeout=60) as client:
        admitted = [
            asyncio.create_task(client.post(f"{worker.url}/tts", json=tts_params(streaming_mode=i % 2)))
            for i in range(4)
        ]
        await asyncio.to_thread(stats_when, worker.url, lambda s: s["queue_depth"] + s["in_flight"] == 4)
        worker.proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            ready = await client.get(f"{worker.url}/readyz")
            if ready.status_code == 503:
                break
            await asyncio.sleep(0.02)
        assert ready.status_code == 503 and ready.json() == {"status": "draining"}
        refused = await client.post(f"{worker.url}/tts", json=tts_params())
        results = await asyncio.gather(*admitted)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "draining" in refused.json()["message"]
    assert [r.status_code for r in results] == [200] * 4
    assert all(len(r.content) > 1000 for r in results)
    assert worker.proc.wait(30) == 0
    assert '"msg": "drained"' in worker.log_text()


def test_drain_timeout_bounds_the_shutdown(spawn_worker):
    worker = spawn_worker("--synthetic-base-seconds", "20", "--drain-timeout", "1")

    async def start_long() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            task = asyncio.create_task(client.post(f"{worker.url}/tts", json=tts_params()))
            await asyncio.to_thread(stats_when, worker.url, lambda s: s["in_flight"] == 1)
            worker.proc.send_signal(signal.SIGTERM)
            try:
                await task
            except httpx.HTTPError:
                pass

    asyncio.run(start_long())
    # The drain timeout (1 s) passes with the 20 s request unfinished: the worker still stops.
    assert worker.proc.wait(15) == 0
    assert "drain timeout" in worker.log_text()
