"""Routing by load, failover, overload and fallback modes, with real routers in front of real synthetic workers."""

from __future__ import annotations

import asyncio
import collections
import json
import signal

import httpx
import jsonschema
import pytest

from support.params import tts_params
from support.wait import eventually
from tts_cli.processes import start_worker
from tts_router.stats import SCHEMA_PATH

pytestmark = pytest.mark.process

SCHEMA = json.loads(SCHEMA_PATH.read_text())


def cluster_stats(router) -> dict:
    body = httpx.get(f"{router.url}/concurrent_stats").json()
    jsonschema.validate(body, SCHEMA)
    return body


async def _spread(router_url: str, requests: int, concurrency: int) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    texts = iter(range(requests))
    async with httpx.AsyncClient(timeout=60) as client:

        async def user() -> None:
            for _ in texts:
                r = await client.post(f"{router_url}/tts", json=tts_params(text="A sentence of a usual length."))
                assert r.status_code == 200, r.text
                counts[r.headers["x-worker-id"]] += 1

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return counts


@pytest.mark.parametrize("policy", ["least-work", "least-loaded", "power-of-two"])
def test_slow_worker_gets_fewer_requests_than_round_robin_gives_it(spawn_worker, spawn_router, policy):
    fast = spawn_worker("--worker-id", "fast", "--synthetic-base-seconds", "0.02", "--synthetic-seconds-per-char", "0.001")
    slow = spawn_worker("--worker-id", "slow", "--synthetic-base-seconds", "0.3", "--synthetic-seconds-per-char", "0.01")
    by_policy = spawn_router(fast, slow, args=("--policy", policy))
    by_turns = spawn_router(fast, slow, args=("--policy", "round-robin"))
    turns = asyncio.run(_spread(by_turns.url, 30, 4))
    load = asyncio.run(_spread(by_policy.url, 30, 4))
    assert sum(turns.values()) == sum(load.values()) == 30
    assert turns["slow"] >= 14  # round-robin alternates regardless of speed
    assert load["slow"] < turns["slow"] - 4, (policy, dict(load), dict(turns))


def test_killed_worker_requests_are_retried_then_it_is_ejected_and_readmitted(spawn_worker, spawn_router, voice_dir, logs_dir):
    keep = spawn_worker("--synthetic-base-seconds", "0.5")
    doomed = spawn_worker("--synthetic-base-seconds", "0.5")
    router = spawn_router(keep, doomed, args=("--policy", "round-robin", "--eject-after", "2"))

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            tasks = [asyncio.create_task(client.post(f"{router.url}/tts", json=tts_params())) for _ in range(6)]
            await asyncio.to_thread(
                eventually, lambda: httpx.get(f"{doomed.url}/stats").json()["queue_depth"] >= 1
            )
            doomed.proc.kill()  # queued and running requests on it are lost with it
            return await asyncio.gather(*tasks)

    results = asyncio.run(scenario())
    assert [r.status_code for r in results] == [200] * 6
    # Requests that were on the killed worker say they were retried; every answer names who served it.
    assert any(int(r.headers["x-retries"]) >= 1 for r in results)
    assert {r.headers["x-worker-id"] for r in results if int(r.headers["x-retries"]) >= 1} == {
        httpx.get(f"{keep.url}/stats").json()["worker_id"]}
    stats = eventually(lambda: (s := cluster_stats(router))["mode"] == "single" and s)
    assert [w["ejected"] for w in stats["workers"] if w["url"] == doomed.url] == [True]
    metrics = httpx.get(f"{router.url}/metrics").text
    assert "ttsc_router_retries_total" in metrics and "ttsc_router_retries_total 0.0" not in metrics
    # The worker comes back on the same port: re-admitted without a router restart.
    back = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir)], logs_dir, port=doomed.port)
    try:
        eventually(lambda: cluster_stats(router)["mode"] == "concurrent")
        r = httpx.get(f"{router.url}/concurrent_stats").json()
        assert not any(w["ejected"] for w in r["workers"])
    finally:
        back.stop()


def test_every_worker_full_gives_503_with_retry_after(spawn_worker, spawn_router):
    a = spawn_worker("--max-queue-size", "1", "--synthetic-base-seconds", "2")
    b = spawn_worker("--max-queue-size", "1", "--synthetic-base-seconds", "2")
    router = spawn_router(a, b, args=("--capacity-wait", "0.2"))

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            busy = [asyncio.create_task(client.post(f"{router.url}/tts", json=tts_params())) for _ in range(2)]
            await asyncio.to_thread(
                eventually,
                lambda: all(httpx.get(f"{w.url}/stats").json()["in_flight"] == 1 for w in (a, b)),
            )
            await asyncio.sleep(0.2)  # let the router's next poll see both full
            refused = await client.post(f"{router.url}/tts", json=tts_params())
            return await asyncio.gather(*busy), refused

    done, refused = asyncio.run(scenario())
    assert [r.status_code for r in done] == [200, 200]
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert "full" in refused.json()["message"]
    assert cluster_stats(router)["failed_requests"] == 1


def test_mode_follows_the_healthy_count(spawn_worker, spawn_router):
    a, b = spawn_worker(), spawn_worker()
    router = spawn_router(a, b)
    assert eventually(lambda: cluster_stats(router)["mode"] == "concurrent")
    assert cluster_stats(router)["gpu_count"] == 2
    a.proc.send_signal(signal.SIGTERM)  # drains and exits
    assert eventually(lambda: cluster_stats(router)["mode"] == "single")
    r = httpx.post(f"{router.url}/tts", json=tts_params(), timeout=30)
    assert r.status_code == 200 and r.headers["x-worker-id"].endswith(f":{b.port}")
    b.proc.send_signal(signal.SIGTERM)
    assert eventually(lambda: cluster_stats(router)["mode"] == "unavailable")
    assert cluster_stats(router)["gpu_count"] == 0
    assert httpx.get(f"{router.url}/readyz").status_code == 503
    r = httpx.post(f"{router.url}/tts", json=tts_params(), timeout=30)
    assert r.status_code == 503 and r.json()["message"] == "no healthy worker"


def test_stream_through_the_router_is_byte_identical_and_chunked(spawn_worker, spawn_router):
    worker = spawn_worker("--synthetic-base-seconds", "0", "--synthetic-seconds-per-char", "0.03")
    router = spawn_router(worker)
    params = tts_params(text="First part here. Second part here. Third part here.", streaming_mode=1)
    direct = httpx.post(f"{worker.url}/tts", json=params, timeout=60).content
    chunks = []
    with httpx.stream("POST", f"{router.url}/tts", json=params, timeout=60) as r:
        assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
        stream = r.iter_raw()
        chunks.append(next(stream))
        while len(chunks[0]) <= 44:
            chunks[0] += next(stream)
        busy = httpx.get(f"{worker.url}/stats").json()
        chunks.extend(stream)
    assert busy["in_flight"] == 1  # the first audio came through before the worker had finished
    assert len(chunks) >= 2
    assert b"".join(chunks) == direct


def test_a_stream_cut_after_bytes_is_not_retried_and_is_counted(spawn_worker, spawn_router):
    slow = ("--synthetic-base-seconds", "0", "--synthetic-seconds-per-char", "0.05")
    one, two = spawn_worker(*slow), spawn_worker(*slow)
    router = spawn_router(one, two, args=("--policy", "round-robin"))
    target = min(one, two, key=lambda w: w.url)  # round-robin's first turn: the first worker in URL order
    text = " ".join(f"Segment number {i} is here." for i in range(8))
    got = b""
    with pytest.raises(httpx.HTTPError):
        with httpx.stream("POST", f"{router.url}/tts", json=tts_params(text=text, streaming_mode=1), timeout=30) as r:
            assert r.status_code == 200 and r.headers["x-worker-id"].endswith(f":{target.port}")
            for chunk in r.iter_raw():
                got += chunk
                if len(got) > 44 and target.proc.poll() is None:
                    target.proc.kill()
    assert len(got) > 44  # the client kept what had arrived, and was told the rest is missing
    stats = eventually(lambda: (s := cluster_stats(router))["failed_requests"] == 1 and s)
    assert stats["completed_requests"] == 0
    metrics = httpx.get(f"{router.url}/metrics").text
    assert "ttsc_router_truncated_streams_total 1.0" in metrics
    assert "ttsc_router_retries_total 0.0" in metrics


def test_a_client_that_leaves_frees_the_worker_waiting_or_mid_stream(spawn_worker, spawn_router):
    worker = spawn_worker("--synthetic-base-seconds", "0", "--synthetic-seconds-per-char", "0.1")
    router = spawn_router(worker)
    text = " ".join(f"Segment number {i} is here." for i in range(10))  # about 25 s of synthetic work

    # Mid-stream: the client reads the first audio, then hangs up.
    with httpx.stream("POST", f"{router.url}/tts", json=tts_params(text=text, streaming_mode=1), timeout=30) as r:
        assert r.status_code == 200
        next(r.iter_raw())
    stats = eventually(lambda: (s := httpx.get(f"{worker.url}/stats").json())["cancelled"] == 1 and s)
    assert stats["in_flight"] == 0 and stats["processed"] == 0

    # Waiting: the worker is busy with one request; a second one waits in its queue, then its client hangs up.
    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            busy = asyncio.create_task(client.post(f"{router.url}/tts", json=tts_params(text=text)))
            await asyncio.to_thread(eventually, lambda: httpx.get(f"{worker.url}/stats").json()["in_flight"] == 1)
            queued = asyncio.create_task(client.post(f"{router.url}/tts", json=tts_params(text="Short one.")))
            await asyncio.to_thread(eventually, lambda: httpx.get(f"{worker.url}/stats").json()["queue_depth"] == 1)
            queued.cancel()
            busy.cancel()
            await asyncio.gather(busy, queued, return_exceptions=True)

    asyncio.run(scenario())
    stats = eventually(lambda: (s := httpx.get(f"{worker.url}/stats").json())["cancelled"] == 3 and s)
    assert stats["queue_depth"] == 0 and stats["in_flight"] == 0 and stats["processed"] == 0
    # The router counts all three as the client's doing (499), not as failures of the cluster.
    assert cluster_stats(router)["failed_requests"] == 0
    metrics = httpx.get(f"{router.url}/metrics").text
    assert 'ttsc_router_requests_total{status="499",worker="' in metrics


def test_workers_file_is_followed_without_a_restart(spawn_worker, spawn_router, tmp_path):
    a, b = spawn_worker(), spawn_worker()
    listing = tmp_path / "workers.txt"
    listing.write_text(f"# the workers\n{a.url}\n")
    router = spawn_router(args=("--workers-file", str(listing)))
    assert [w["url"] for w in cluster_stats(router)["workers"]] == [a.url]
    listing.write_text(f"{a.url}\n{b.url}  # added\n")
    eventually(lambda: cluster_stats(router)["mode"] == "concurrent", timeout=10)
    listing.write_text(f"{b.url}\n")
    eventually(lambda: [w["url"] for w in cluster_stats(router)["workers"]] == [b.url], timeout=10)
