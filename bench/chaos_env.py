"""One chaos scenario's world, shared by the scenario modules: its load profile, its processes and the marks of
what happened when; a load run beside the faults and side tasks (bursts, floods) that a scenario injects."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tts_cli.processes import ServiceProcess

from .chaos_fleet import Fleet, ProcMonitor
from .chaos_load import ChaosClient, Clock, Job, Outcome, Steady, run_steady
from .chaos_report import Check, ScenarioResult
from .corpus import mixed_texts

WORKERS = 3
# Passed to routers and workers where their --help lists the flag: short enough that a flood outlives it even in
# a --quick run, so the suite sees whether idle and half-sent connections are let go.
READ_TIMEOUT, KEEPALIVE_TIMEOUT, MAX_CONNECTIONS = 2.0, 3.0, 1024


@dataclass(frozen=True)
class Profile:
    quick: bool
    rate: float
    seconds: float
    bound: float
    idle_sockets: int
    slow_headers: int
    seed: int
    tail: float  # load after the last fault action, to show the recovery
    abandoned: int = 3000  # streams left after their first bytes, in each memory scenario

    @staticmethod
    def of(args: Any) -> "Profile":
        q = bool(args.quick)
        return Profile(q, args.rate, args.seconds or (1.5 if q else 8.0), args.bound or (20.0 if q else 30.0),
                       args.idle_sockets or (1000 if q else 3000), args.slow_headers or (300 if q else 1000),
                       args.seed, 0.8 if q else 1.5, args.abandoned or (500 if q else 3000))


@dataclass
class Marks:
    """When things happened during a load, on its clock (set from fault threads and the loop alike)."""

    clock: Clock
    times: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        t = self.clock.now()
        self.times.setdefault(name, t)
        return t

    def get(self, name: str) -> Optional[float]:
        return self.times.get(name)


Fault = tuple[float, Callable[[Marks], None]]  # (at seconds, action run on a thread: it may block)
Side = Callable[[ChaosClient, Marks], Awaitable[None]]  # a coroutine beside the load (a burst, a flood)


class Env:
    """One scenario's world: its processes, its monitor, its load profile."""

    def __init__(self, profile: Profile, fleet: Fleet, monitor: ProcMonitor, on_done: Callable[[], None]) -> None:
        self.p, self.fleet, self.monitor, self.on_done = profile, fleet, monitor, on_done

    @property
    def flood_hold(self) -> float:
        """How long a flood is held: past the router's read timeout when it has one, so its effect shows."""
        has_timeout = "--read-timeout" in self.fleet.hardening.router
        return max(self.p.seconds * 0.75, READ_TIMEOUT + 1.0 if has_timeout else 0.0)

    def jobs(self, modes: Sequence[int], count: int = 64) -> list[Job]:
        texts = mixed_texts(count, seed=self.p.seed)
        return [Job(t, modes[i % len(modes)]) for i, t in enumerate(texts)]

    def load(self, entries: list[str], jobs: list[Job], faults: Sequence[Fault] = (), sides: Sequence[Side] = (),
             failover: bool = False, steady: bool = True) -> tuple[list[Outcome], Marks]:
        return asyncio.run(self._load(entries, jobs, faults, sides, failover, steady))

    async def _load(self, entries: list[str], jobs: list[Job], faults: Sequence[Fault], sides: Sequence[Side],
                    failover: bool, steady: bool) -> tuple[list[Outcome], Marks]:
        clock = Clock()
        marks = Marks(clock)
        busy = threading.Event()
        busy.set()  # the load goes on while any fault or side task is still running
        async with ChaosClient(entries, clock, self.p.bound, failover=failover, on_done=self.on_done) as client:

            async def chaos() -> None:
                try:
                    await asyncio.gather(_run_faults(faults, marks), *(_guard(s(client, marks), marks)
                                                                        for s in sides))
                finally:
                    busy.clear()

            tasks: list[Awaitable[None]] = [chaos()]
            if steady:
                cap = 6 * self.p.seconds + 60  # a fault that hangs cannot hold the load forever
                tasks.append(run_steady(client, Steady(self.p.rate, self.p.seconds, jobs, tail=self.p.tail,
                                                       max_seconds=cap, seed=self.p.seed), busy))
            await asyncio.gather(*tasks)
        return client.outcomes, marks


async def _run_faults(faults: Sequence[Fault], marks: Marks) -> None:
    for at, action in sorted(faults, key=lambda f: f[0]):
        await asyncio.sleep(max(0.0, at - marks.clock.now()))
        try:
            await asyncio.to_thread(action, marks)
        except Exception as exc:  # noqa: BLE001 - reported as the scenario's error, the load still ends
            marks.errors.append(f"{type(exc).__name__}: {exc}"[:300])


async def _guard(side: Awaitable[None], marks: Marks) -> None:
    try:
        await side
    except Exception as exc:  # noqa: BLE001
        marks.errors.append(f"{type(exc).__name__}: {exc}"[:300])


def scenario_result(key: str, title: str, injected: str, outcomes: list[Outcome], marks: Marks,
            rec: Optional[float], checks: Sequence[Check] = (), **extra: Any) -> ScenarioResult:
    return ScenarioResult(key, title, injected, outcomes, injected_at=marks.get("injected"), recovery_s=rec,
                          checks=list(checks), extra={**marks.notes, **extra},
                          error="; ".join(marks.errors) or None)


def alive(procs: Sequence[ServiceProcess], what: str) -> Check:
    dead = [f"{p.url} ({p.proc.returncode})" for p in procs if p.proc.poll() is not None]
    return Check(f"every {what} alive", not dead, f"{len(procs) - len(dead)}/{len(procs)} alive" +
                 (f", dead (exit code): {', '.join(dead)}" if dead else ""))


def role_name(env: Env, p: ServiceProcess) -> str:
    return env.fleet.specs[p.port].role.split()[-1]


def write_list(path: Path, workers: Sequence[ServiceProcess]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{w.url}\n" for w in workers), encoding="utf-8")
    tmp.replace(path)  # atomic: the router never reads half a file
