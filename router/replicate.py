"""Hot voices replicate ahead of need: another worker loads a voice in the background while its requests keep going
to the workers that hold it.

Routing sends a voice's requests only to workers whose last poll lists it as loaded (`policy.LeastWork`); a request
waits for a load only when no worker holds its voice. That alone would leave a hot voice on one worker however long
its queue grows, so this module watches each voice's pressure: the shortest expected wait at its holders, priced
like least-work prices a worker. Above `wait_ratio` x the voice's load time for `window` seconds (not one burst:
below half of that threshold the clock starts over), the worker best placed to hold one more copy is asked to load
it in the background (`POST /voices/{name}/load` on the worker). It is counted as a holder once its /stats lists the
voice as loaded; meanwhile the load sits in its queued work, so least-work sends it less. Nothing releases a copy:
once the pressure is gone the extra copy is an ordinary loaded voice, evicted by the worker's LRU when another
voice needs its slot. A replica never evicts a voice that no other worker holds (`protect`), nor one pinned there.

The decisions (`pressure_step`, `replica_target`) are pure functions of the workers' last polls; `Replicator` owns
what is remembered between requests: when each voice's pressure began, and the replicas asked for and not yet
loaded (one per voice at a time).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import aiohttp

from tts_common.logs import log_fields

from .pool import WorkerState

log = logging.getLogger("tts_router.replicate")

# A replica asked for and not listed as loaded after this many of its load times (plus a margin for the queue
# ahead of it) is given up: the worker evicted it, failed, or never got the call.
GIVE_UP_LOADS = 5.0
GIVE_UP_MARGIN_SECONDS = 10.0
# Time constant of each voice's demand estimate (engine seconds asked per second, decaying): long enough to span
# many requests of a minor voice, short enough to follow a shift in popularity within a minute or so.
DEMAND_SECONDS = 10.0
# A copy displaces another voice's copy only if that voice would be asked for less than this fraction of the new
# copy's need per remaining copy: demand estimates wander, and without the margin two voices of about the same
# demand took each other's copies in turn (bench voices: 12 background loads in 40 s).
DISPLACE_MARGIN = 0.5


@dataclass(frozen=True)
class ReplicaRules:
    # The router's settings' defaults (replicate_*), chosen with `tts-cluster bench voices`.
    wait_ratio: float = 0.35
    window: float = 0.75
    min_share: float = 0.15


def decayed(rate: float, since: float, now: float, add: float, tau: float = DEMAND_SECONDS) -> float:
    """A rate (per second) decayed from `since` to `now`, plus `add` arriving now."""
    return rate * math.exp(-max(0.0, now - since) / tau) + add / tau


def copies_of(healthy: Sequence[WorkerState]) -> dict[str, int]:
    """How many workers hold (have loaded or are loading) each voice."""
    copies: dict[str, int] = {}
    for w in healthy:
        if w.stats is not None:
            for v in {*w.stats.loaded_voices, *w.stats.voices_loading}:
                copies[v] = copies.get(v, 0) + 1
    return copies


def per_copy(voice: str, demand: Mapping[str, float], copies: Mapping[str, int]) -> float:
    """The share of one worker's time each copy of `voice` is asked for (its demand over its copies)."""
    return demand.get(voice, 0.0) / max(1, copies.get(voice, 0))


def pressure_step(since: Optional[float], wait: float, threshold: float, now: float,
                  window: float) -> tuple[Optional[float], bool]:
    """One observation of a voice's holders' wait: (when its pressure began, or None; whether it has lasted
    `window` seconds). Hysteresis: pressure begins above `threshold` and ends only below half of it, so a wait
    hovering at the threshold neither restarts the clock nor fires at once."""
    if wait > threshold:
        since = now if since is None else since
    elif wait < threshold / 2:
        since = None
    return since, since is not None and now - since >= window


def holders_wait(holders: Sequence[WorkerState], chars: int, reference: float) -> float:
    """Seconds a request of `chars` characters would wait before starting at the best of the voice's holders: what
    it costs the voice to have no more copies (inf: none holds it)."""
    waits = [w.expected_finish(chars, reference) - w.cost(chars, reference) if w.has_room() else float("inf")
             for w in holders]
    return min(waits, default=float("inf"))


def sole_copies(worker: WorkerState, others: Sequence[WorkerState]) -> frozenset[str]:
    """Voices `worker` holds (loaded or loading) that none of `others` holds."""
    s = worker.stats
    if s is None:
        return frozenset()
    mine = {*s.loaded_voices, *s.voices_loading}
    return frozenset(v for v in mine if not any(o.holds(v) for o in others))


def kept_for(worker: WorkerState, need: float, demand: Mapping[str, float],
             copies: Mapping[str, int]) -> frozenset[str]:
    """The voices on `worker` a copy of another voice, asked for `need` per copy, must not evict: every sole copy,
    and every copy whose voice would be asked for more than DISPLACE_MARGIN x `need` per remaining copy without it.
    So a copy only ever displaces one that is clearly less needed, and two voices never take each other's copies in
    turn."""
    s = worker.stats
    if s is None:
        return frozenset()
    mine = {*s.loaded_voices, *s.voices_loading}
    return frozenset(v for v in mine
                     if copies.get(v, 1) <= 1 or demand.get(v, 0.0) / (copies.get(v, 1) - 1) >= DISPLACE_MARGIN * need)


def can_take(worker: WorkerState, protect: frozenset[str]) -> bool:
    """Whether a load on `worker` finds a slot without evicting a voice in `protect`, a pinned one or one its
    admitted requests want (the worker refuses those too)."""
    s = worker.stats
    if s is None:
        return False
    if len(s.loaded_voices) + len(s.voices_loading) + len(s.voices_replicating) < s.max_loaded_voices:
        return True
    return any(v not in protect and v not in s.pinned_voices and v not in s.voices_queued for v in s.loaded_voices)


def replica_target(voice: str, healthy: Sequence[WorkerState], chars: int, reference: float,
                   demand: Optional[Mapping[str, float]] = None) -> Optional[tuple[WorkerState, frozenset[str]]]:
    """The worker to load one more copy of `voice`, and the voices that load must not evict (`kept_for`: sole
    copies, and copies more needed than this one); None when no worker can take one without evicting those.
    Among those that can: the least demand for the voices only it holds (their requests have nowhere else to go, so
    they wait behind the load), then the one where a request would finish first."""
    demand = demand or {}
    copies = copies_of(healthy)
    need = per_copy(voice, demand, copies)
    options: list[tuple[float, float, WorkerState, frozenset[str]]] = []
    for w in healthy:
        s = w.stats
        if s is None or voice not in s.voices or w.holds(voice) or voice in s.voices_replicating or w.draining:
            continue
        protect = kept_for(w, need, demand, copies)
        if can_take(w, protect):
            sole = sole_copies(w, [o for o in healthy if o is not w])
            held_up = sum(demand.get(v, 0.0) for v in sole) + 1e-3 * len(sole)  # unknown demand: still a voice
            options.append((held_up, w.expected_finish(chars, reference), w, protect))
    if not options:
        return None
    _, _, best, protect = min(options, key=lambda o: (o[0], o[1]))
    return best, protect


@dataclass
class Pending:
    """A replica asked for: where, when, and whether the worker took the call (202 or 200)."""

    url: str
    asked_at: float
    give_up_at: float
    answered_at: Optional[float] = None


# (worker, voice, protect) -> whether the worker took the call
Ask = Callable[[WorkerState, str, frozenset[str]], Awaitable[bool]]


@dataclass
class ReplicaCounts:
    asked: int = 0
    loaded: int = 0
    given_up: int = 0


@dataclass
class Replicator:
    rules: ReplicaRules
    ask: Ask
    pressure: dict[str, float] = field(default_factory=dict)  # voice -> when its pressure began
    pending: dict[str, Pending] = field(default_factory=dict)  # voice -> the replica asked for, not loaded yet
    demand: dict[str, float] = field(default_factory=dict)  # voice -> engine seconds asked per second (decaying)
    _demand_at: dict[str, float] = field(default_factory=dict)
    counts: ReplicaCounts = field(default_factory=ReplicaCounts)
    _tasks: set["asyncio.Task[None]"] = field(default_factory=set)

    def consider(self, voice: str, healthy: Sequence[WorkerState], chars: int, reference: float,
                 load_seconds: float) -> None:
        """Called for each request routed by voice: count its demand, settle this voice's replica under way, then
        watch its pressure and ask for a replica once it has lasted the window, if the voice is asked for enough
        per copy (`min_share` of a worker) for another copy to matter."""
        now = time.monotonic()
        self._note_demand(voice, chars * reference, now)
        if self._settle(voice, healthy, now):
            return  # one copy at a time: the next one only once this one counts (or is given up)
        holders = [w for w in healthy if w.has_loaded(voice)]
        threshold = self.rules.wait_ratio * load_seconds
        since, sustained = pressure_step(self.pressure.get(voice), holders_wait(holders, chars, reference),
                                         threshold, now, self.rules.window)
        if since is None:
            self.pressure.pop(voice, None)
        else:
            self.pressure[voice] = since
        if not sustained or not holders:  # held nowhere: the next request loads it, not a replica
            return
        demand = self.current_demand(now)
        if per_copy(voice, demand, copies_of(healthy)) < self.rules.min_share:
            return  # its holders are busy with other voices: a copy of this one would relieve them little
        target = replica_target(voice, healthy, chars, reference, demand)
        if target is None:
            return
        worker, protect = target
        worker.expect_eviction(voice, protect)
        self.pressure.pop(voice, None)  # the window starts over once the new copy counts
        self.pending[voice] = Pending(worker.url, now, now + GIVE_UP_MARGIN_SECONDS + GIVE_UP_LOADS * load_seconds)
        self.counts.asked += 1
        log_fields(log, "voice replica asked", voice=voice, worker=worker.name, holders=[w.name for w in holders],
                   protect=sorted(protect), pressure_s=round(now - since, 3) if since is not None else None)
        task = asyncio.create_task(self._call(worker, voice, protect), name=f"replicate {voice}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _note_demand(self, voice: str, seconds: float, now: float) -> None:
        self.demand[voice] = decayed(self.demand.get(voice, 0.0), self._demand_at.get(voice, now), now, seconds)
        self._demand_at[voice] = now

    def current_demand(self, now: float) -> dict[str, float]:
        """Each voice's demand decayed to `now` (engine seconds asked per second: 1.0 is one worker's time)."""
        return {v: decayed(r, self._demand_at[v], now, 0.0) for v, r in self.demand.items()}

    def _settle(self, voice: str, healthy: Sequence[WorkerState], now: float) -> bool:
        """Whether a replica of `voice` is still under way (forgotten once loaded, refused or given up)."""
        p = self.pending.get(voice)
        if p is None:
            return False
        worker = next((w for w in healthy if w.url == p.url), None)
        polled_after = (worker is not None and p.answered_at is not None and worker.stats is not None
                        and worker.polled_at > p.answered_at)
        if worker is not None and worker.has_loaded(voice) and worker.polled_at > p.asked_at:
            self.counts.loaded += 1
            log_fields(log, "voice replica loaded", voice=voice, worker=worker.name,
                       seconds=round(now - p.asked_at, 3))
        elif (now < p.give_up_at and worker is not None
              and not (polled_after and worker.stats is not None and not worker.holds(voice)
                       and voice not in worker.stats.voices_replicating)):
            return True  # still on its way
        else:
            self.counts.given_up += 1
            log_fields(log, "voice replica given up", logging.WARNING, voice=voice, worker=p.url)
        del self.pending[voice]
        return False

    async def _call(self, worker: WorkerState, voice: str, protect: frozenset[str]) -> None:
        taken = False
        try:
            taken = await self.ask(worker, voice, protect)
        finally:
            p = self.pending.get(voice)
            if p is not None and p.url == worker.url:
                if taken:
                    p.answered_at = time.monotonic()
                else:  # refused or unreachable: the next request under pressure may try another worker
                    del self.pending[voice]
                    self.counts.given_up += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def http_ask(session: aiohttp.ClientSession, token: str, timeout: float = 5.0) -> Ask:
    """The call to a worker: `POST /voices/{name}/load` with the voices it must not evict, with the cluster's admin
    token where there is one. It answers at once (the load runs later, in the background): True when it took it."""
    limit = aiohttp.ClientTimeout(total=timeout)

    async def ask(worker: WorkerState, voice: str, protect: frozenset[str]) -> bool:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        params = [("protect", v) for v in sorted(protect)]
        try:
            async with session.post(f"{worker.url}/voices/{voice}/load", params=params, headers=headers,
                                    timeout=limit) as r:
                if r.status in (200, 202):
                    return True
                body = (await r.text())[:200]
        except (TimeoutError, aiohttp.ClientError) as exc:
            body = f"{type(exc).__name__}: {exc}"
        log_fields(log, "voice replica refused", logging.WARNING, voice=voice, worker=worker.name, answer=body)
        return False

    return ask
