"""The router's view of its workers: discovered URLs, polled /stats, its own in-flight counts, ejection."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional

import httpx
from pydantic import ValidationError

from tts_common.logs import log_fields
from tts_common.schemas import WorkerStats

log = logging.getLogger("tts_router.pool")


@dataclass
class Target:
    """What discovery knows about one worker."""

    url: str
    name: str = ""
    draining: bool = False


@dataclass
class WorkerState:
    url: str
    given_name: str = ""  # from discovery (the pod name in Kubernetes); static lists give none
    stats: Optional[WorkerStats] = None
    polled_at: float = 0.0
    # Requests this router sent since the last poll: the poll already counts earlier ones.
    sent_since_poll: int = 0
    work_since_poll: float = 0.0
    in_flight: int = 0
    failures: int = 0
    ejected: bool = False
    discovery_draining: bool = False
    ever_polled: bool = False
    routed: int = 0
    completed: int = 0
    failed: int = 0
    poller: Optional["asyncio.Task[None]"] = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """One name for a worker in the router's logs, metrics and stats, matching the worker's own: discovery's
        (the pod name, which is also the worker id in Kubernetes), else the id the worker reports, else its URL."""
        if self.given_name:
            return self.given_name
        return self.stats.worker_id if self.stats is not None else self.url

    def fresh(self, now: float, stale_after: float) -> bool:
        return self.stats is not None and now - self.polled_at <= stale_after

    @property
    def draining(self) -> bool:
        return self.discovery_draining or bool(self.stats and self.stats.draining)

    def healthy(self, now: float, stale_after: float) -> bool:
        """Serving now: answering polls, ready, not ejected, not draining."""
        return (
            not self.ejected
            and not self.draining
            and self.fresh(now, stale_after)
            and self.stats is not None
            and self.stats.ready
        )

    @property
    def admitted(self) -> int:
        """Requests admitted at the worker as far as this router can tell."""
        s = self.stats
        return (s.queue_depth + s.in_flight if s else 0) + self.sent_since_poll

    @property
    def capacity(self) -> int:
        return self.stats.capacity if self.stats else 1

    def has_room(self) -> bool:
        return self.admitted < self.capacity

    def cost(self, chars: int) -> float:
        """Estimated engine seconds for a text of `chars` characters on this worker."""
        s = self.stats
        if s is None:
            return float(chars)
        per_char = s.seconds_per_char or (s.average_processing_time / 100.0 if s.average_processing_time else 0.0)
        return chars * per_char

    def expected_finish(self, chars: int) -> float:
        """When a new request would finish here: admitted work, plus what was sent since the poll, plus itself."""
        s = self.stats
        queued = s.queued_work_seconds if s else 0.0
        return queued + self.work_since_poll + self.cost(chars)


class WorkerPool:
    def __init__(
        self,
        client: httpx.AsyncClient,
        poll_interval: float,
        stale_after: float,
        eject_after: int,
    ) -> None:
        self.client = client
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.eject_after = eject_after
        self.workers: dict[str, WorkerState] = {}
        self.changed = asyncio.Event()  # set whenever a poll lands, so waiters for a free slot re-check
        self.ejections: dict[str, int] = {}  # by worker name, for ttsc_router_ejections_total

    # -- membership (from discovery) -------------------------------------------------------------------------
    def sync(self, targets: Iterable[Target]) -> None:
        wanted = {t.url: t for t in targets}
        for url in list(self.workers):
            if url not in wanted:
                state = self.workers.pop(url)
                if state.poller:
                    state.poller.cancel()
                log_fields(log, "worker removed", worker=url)
        for url, target in wanted.items():
            state = self.workers.get(url)
            if state is None:
                state = WorkerState(url=url, given_name=target.name)
                self.workers[url] = state
                state.poller = asyncio.create_task(self._poll_forever(state), name=f"poll {url}")
                log_fields(log, "worker added", worker=url, name=state.name)
            state.discovery_draining = target.draining
        self.changed.set()

    async def close(self) -> None:
        for state in self.workers.values():
            if state.poller:
                state.poller.cancel()
        await asyncio.gather(*(s.poller for s in self.workers.values() if s.poller), return_exceptions=True)

    # -- polling ---------------------------------------------------------------------------------------------
    async def _poll_forever(self, state: WorkerState) -> None:
        while True:
            await self.poll(state)
            await asyncio.sleep(self.poll_interval)

    async def poll(self, state: WorkerState) -> None:
        sent_before, work_before = state.sent_since_poll, state.work_since_poll
        try:
            r = await self.client.get(f"{state.url}/stats", timeout=max(0.5, self.stale_after))
            r.raise_for_status()
            stats = WorkerStats.model_validate(r.json())
        except (httpx.HTTPError, ValueError, ValidationError) as exc:
            self.record_failure(state, f"poll: {type(exc).__name__}: {exc}")
            return
        state.stats = stats
        state.polled_at = time.monotonic()
        state.ever_polled = True
        # What was sent while the poll was in flight may not be in it yet: keep only that part.
        state.sent_since_poll = max(0, state.sent_since_poll - sent_before)
        state.work_since_poll = max(0.0, state.work_since_poll - work_before)
        self.record_success(state)
        self.changed.set()

    # -- health ----------------------------------------------------------------------------------------------
    def record_failure(self, state: WorkerState, reason: str) -> None:
        state.failures += 1
        if not state.ejected and state.failures >= self.eject_after:
            state.ejected = True
            self.ejections[state.name] = self.ejections.get(state.name, 0) + 1
            log_fields(log, "worker ejected", logging.WARNING, worker=state.url, reason=reason,
                       failures=state.failures)
            self.changed.set()

    def record_success(self, state: WorkerState) -> None:
        state.failures = 0
        if state.ejected:
            state.ejected = False
            log_fields(log, "worker re-admitted", worker=state.url)
            self.changed.set()

    # -- views -----------------------------------------------------------------------------------------------
    def ordered(self) -> list[WorkerState]:
        return [self.workers[url] for url in sorted(self.workers)]

    def healthy(self) -> list[WorkerState]:
        now = time.monotonic()
        return [w for w in self.ordered() if w.healthy(now, self.stale_after)]

    def engine_facts(self) -> Optional[WorkerStats]:
        """A healthy worker's stats, for the engine-dependent checks; None when none is known."""
        healthy = self.healthy()
        return healthy[0].stats if healthy else None
