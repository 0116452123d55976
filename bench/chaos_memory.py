"""Memory after clients that leave: thousands of streams abandoned after their first bytes, then the process's
resident memory once it is idle again, against what it held before.

A router once kept about 200 KB for every stream a client left early (issue 30: aiohttp's one shared
"Connection closed" exception collected every abandoned stream's frames in its traceback), which no count of
requests or of open files showed. So the suite measures RSS itself: after a warm-up (allocator pools, pooled
connections, metric children), before and after the abandoned streams, once nothing is in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from tts_cli.processes import ServiceProcess

from .chaos_env import Env, Marks, Side, alive, scenario_result
from .chaos_fleet import rss_kb
from .chaos_load import ChaosClient, Clock, Job
from .chaos_report import Check, ScenarioResult

# The most a process may grow, after returning to idle, over one scenario's abandoned streams: allocator noise is
# well under this (see the table in docs/reliability.md), the old leak was 200 KB a stream (600 MB for 3,000).
RSS_GROWTH_LIMIT_MB = 8.0
ABANDON_TEXT = "One stream that its client leaves. After the first chunk, nobody reads the rest of it."


@dataclass
class Abandoned:
    """What the abandoning clients saw: streams that began (a 200 and audio bytes), refusals, errors."""

    began: int = 0
    refused: dict[int, int] = field(default_factory=dict)  # by status
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return self.began + sum(self.refused.values()) + sum(self.errors.values())


def _request(job: Job) -> bytes:
    body = json.dumps(job.params()).encode()
    head = (f"POST /tts HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()
    return head + body


async def _abandon_one(port: int, request: bytes, seen: Abandoned, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                if status != 200:
                    seen.refused[status] = seen.refused.get(status, 0) + 1
                    return
                await reader.read(64)  # the first audio bytes: the stream is under way
                seen.began += 1
            finally:
                writer.transport.abort()  # a reset, as a client that vanishes: no more is read
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError, TimeoutError) as exc:
        name = type(exc).__name__
        seen.errors[name] = seen.errors.get(name, 0) + 1


async def abandon_streams(port: int, count: int, concurrency: int = 8, timeout: float = 20.0) -> Abandoned:
    """`count` streamed requests to `port`, each left by its client after its first bytes, `concurrency` at a time."""
    request = _request(Job(ABANDON_TEXT, mode=1))
    seen = Abandoned()
    turns = iter(range(count))
    t0 = time.monotonic()

    async def client() -> None:
        for _ in turns:
            await _abandon_one(port, request, seen, timeout)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    seen.seconds = time.monotonic() - t0
    return seen


def wait_idle(worker: ServiceProcess, timeout: float = 30.0, settle: float = 1.0) -> bool:
    """Until `worker` has nothing queued or running (the abandoned jobs are cancelled), then `settle` seconds more,
    for the processes' own clean-up (closed connections, finished tasks)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                s = http.get(f"{worker.url}/stats").json()
                if s.get("queue_depth", 1) == 0 and s.get("in_flight", 1) == 0:
                    time.sleep(settle)
                    return True
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
    return False


@dataclass
class Growth:
    """Resident memory of the processes measured, in MB, before and after the abandoned streams."""

    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)

    def grown(self, role: str) -> float:
        return round(self.after.get(role, 0.0) - self.before.get(role, 0.0), 1)


def measure(procs: dict[str, ServiceProcess]) -> dict[str, float]:
    return {role: round(rss_kb(p.proc.pid) / 1024, 1) for role, p in procs.items()}


def abandon_scenario(env: Env, through_router: bool) -> ScenarioResult:
    """One synthetic worker (behind a router, or alone): a warm-up, then `Profile.abandoned` streams left after
    their first bytes; the measured processes must come back within RSS_GROWTH_LIMIT_MB once idle, and still
    answer whole requests after."""
    # A fast engine: the first chunk comes at once, so thousands of streams take seconds, not minutes.
    (worker,), routers = env.fleet.cluster(1, routers=1 if through_router else 0, base=0.0, per_char=0.0001)
    entry = routers[0] if through_router else worker
    measured = {"router": entry, "worker": worker} if through_router else {"worker": worker}
    count = env.p.abandoned
    marks = Marks(Clock())
    warm = asyncio.run(abandon_streams(entry.port, max(200, count // 10)))
    idle_before = wait_idle(worker)
    growth = Growth(before=measure(measured))
    marks.mark("injected")
    seen = asyncio.run(abandon_streams(entry.port, count))
    idle_after = wait_idle(worker)
    growth.after = measure(measured)
    after = env.load([entry.url], env.jobs([0, 1])[:6], steady=False, sides=[_whole_requests(env.jobs([0, 1])[:6])])
    outcomes = after[0]
    checks = [alive(list(measured.values()), "process"),
              Check("idle before and after", idle_before and idle_after,
                    f"nothing in flight at the worker: before {idle_before}, after {idle_after}"),
              Check("every abandoned stream began", seen.began == count,
                    f"{seen.began}/{count} began; refused {seen.refused}, errors {seen.errors}")]
    for role in measured:
        grown = growth.grown(role)
        checks.append(Check(f"{role} RSS back within {RSS_GROWTH_LIMIT_MB:g} MB when idle", grown <= RSS_GROWTH_LIMIT_MB,
                            f"{growth.before[role]} -> {growth.after[role]} MB (+{grown} MB, "
                            f"{grown * 1024 / max(1, count):.1f} KB a stream) over {count} abandoned streams"))
    who = "router" if through_router else "worker"
    key, title = (f"abandon-{who}", f"{17 if through_router else 18} abandoned streams, {who}")
    result = scenario_result(key, title, f"{count} streams left after the first bytes", outcomes, marks, None, checks,
                             abandoned=count, abandon_s=round(seen.seconds, 1), warm_up=warm.began,
                             rss_before_mb=growth.before, rss_after_mb=growth.after,
                             rss_growth_mb={role: growth.grown(role) for role in measured})
    result.recovery_applies = False  # nothing to recover from: the measure is the memory
    return result


def _whole_requests(jobs: list[Job]) -> Side:
    """A side task: `jobs` one after another, each whole: the cluster still serves after the abandoned streams."""

    async def send(client: ChaosClient, m: Marks) -> None:
        for job in jobs:
            await client.send(job)

    return send
