"""The router's view of its workers, and the one owner of every per-worker counter.

Discovery tells the pool which URLs exist; the pool polls each one's /stats, hands out a `Lease` for each request
it routes (`reserve`), and takes the request's outcome back through that lease, so routed, in-flight, completed and
failed counts, the load added since the last poll, and ejection all change here and nowhere else.

A worker's one identity is its URL: retries exclude by it, and names (the pod's, or the id the worker reports) are
for logs, metrics and stats only.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Protocol

import aiohttp
from pydantic import ValidationError

from tts_common.logs import log_fields
from tts_common.schemas import WorkerStats

from .finish import expected_finish
from .health import Outcomes, OutlierRules, doubtful, ejection_reason, ejection_seconds, may_eject, suspect
from .outcome import Outcome, answer_outcome

log = logging.getLogger("tts_router.pool")

# Seconds per character assumed while no worker has measured its own: it makes an unmeasured cluster route by
# admitted text, the best guess there is, rather than treating every fresh worker as free.
DEFAULT_SECONDS_PER_CHAR = 0.01
UNREACHABLE = "unreachable"


@dataclass
class Target:
    """What discovery knows about one worker."""

    url: str
    name: str = ""
    draining: bool = False


# A request sent this long before a poll began is taken to be in that poll's answer (it reached the worker first).
IN_POLL_MARGIN_SECONDS = 0.1
# The load time assumed for a voice no worker has measured yet.
DEFAULT_VOICE_LOAD_SECONDS = 2.0
# A worker that answered 503 (full, draining, a voice it cannot load) is left out of the choice for this long, twice
# as long for each further 503 in a row, never longer than its own Retry-After nor REFUSAL_HOLD_MAX_SECONDS. Its
# /stats can say it has room while it refuses (stale by a poll, or a worker whose queue is not what admits): without
# the hold each request went there first and spent a retry, and once the retry budget was spent its 503s reached
# clients while a peer stood idle (issue 30).
REFUSAL_HOLD_SECONDS = 0.5
REFUSAL_HOLD_MAX_SECONDS = 5.0


class UnknownVoice(Exception):
    """No worker's catalog has the voice: 404, naming those they have."""


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
    poll_failures: int = 0
    ejected: bool = False
    ejected_reason: str = ""
    ejected_until: float = 0.0
    times_ejected: int = 0
    probing: bool = False
    discovery_draining: bool = False
    ever_polled: bool = False
    routed: int = 0
    completed: int = 0
    failed: int = 0
    refusals: int = 0  # 503s in a row, since it last admitted a request of ours
    refused_until: float = 0.0  # monotonic time until which it gets no request (see REFUSAL_HOLD_SECONDS)
    outcomes: Outcomes = field(default_factory=Outcomes)
    # Voices this router sent here since the last poll could see them (voice -> when): the worker will load or
    # holds them, so the next requests for that voice follow instead of loading it on a second worker. A poll that
    # saw them replaces them: then the worker's own word (held, loading, queued) counts, evictions included.
    voices_sent: dict[str, float] = field(default_factory=dict)
    # Voices a load this router caused here will evict, as the worker's LRU will choose them (victim -> the voice
    # whose load evicts it): no longer counted as held from the moment that load is sent, so the router stops
    # sending them here (which also keeps them least recently used, the victim it predicted). Forgotten once a
    # poll shows that load done or the victim gone.
    evicting: dict[str, str] = field(default_factory=dict)
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

    def serving(self, now: float, stale_after: float) -> bool:
        """Answering polls, ready and not draining (ejected or not)."""
        return not self.draining and self.fresh(now, stale_after) and self.stats is not None and self.stats.ready

    def healthy(self, now: float, stale_after: float) -> bool:
        """Serving now: answering polls, ready, not ejected, not draining."""
        return not self.ejected and self.serving(now, stale_after)

    def probe_due(self, now: float, stale_after: float) -> bool:
        """Ejected for its answers, its ejection over, and no probe out: it may take one request to prove itself."""
        return (self.ejected and self.ejected_reason != UNREACHABLE and now >= self.ejected_until
                and not self.probing and self.serving(now, stale_after))

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

    def refusing(self, now: float) -> bool:
        """It answered 503 lately: held out of the choice (see REFUSAL_HOLD_SECONDS)."""
        return now < self.refused_until

    @property
    def room(self) -> int:
        return self.capacity - self.admitted

    @property
    def loaded_voice_count(self) -> int:
        return len(self.stats.loaded_voices) if self.stats is not None else 0

    def seconds_per_char(self, reference: float) -> float:
        """Its own measured speed; a worker that has measured nothing yet is priced at its peers' (`reference`)."""
        s = self.stats
        own = s.seconds_per_char if s is not None else 0.0
        return own if own > 0 else reference

    def cost(self, chars: int, reference: float) -> float:
        """Estimated seconds a text of `chars` characters takes on this worker (at its concurrency)."""
        return chars * self.seconds_per_char(reference)

    @property
    def max_batch(self) -> int:
        """Most requests it serves at once (1: one at a time, and any worker older than batching)."""
        return self.stats.max_batch if self.stats is not None else 1

    def work(self, chars: int, reference: float) -> float:
        """Engine seconds a text of `chars` characters adds to this worker's admitted work: on a batching worker
        that measured its speed, at its aggregate rate (several requests share each second); else its cost."""
        s = self.stats
        if s is not None and s.max_batch > 1 and s.chars_per_second > 0:
            return chars / s.chars_per_second
        return self.cost(chars, reference)

    def serves(self, voice: Optional[str]) -> bool:
        """Whether this worker can serve `voice` (None, the default voice: every worker)."""
        return voice is None or (self.stats is not None and voice in self.stats.voices)

    def voice_load(self, voice: Optional[str], default: float) -> float:
        """Seconds before this worker could start on `voice`: 0 if it holds, loads or is about to load it (by its
        last poll), or was sent it since; else its measured load time for it (else `default`, the peers')."""
        s = self.stats
        if voice is None or s is None or voice in self.voices_sent:
            return 0.0
        if voice in s.loaded_voices or voice in s.voices_loading or voice in s.voices_queued:
            return 0.0
        return s.voice_load_seconds.get(voice, default)

    def eviction_victim(self, protect: frozenset[str] = frozenset()) -> Optional[str]:
        """The voice a load here would evict, as the worker chooses it (least recently used, unpinned, sparing
        those its queue wants while it can, never one in `protect`); None while it has a free slot."""
        s = self.stats
        if s is None or len(s.loaded_voices) + len(s.voices_loading) + len(s.voices_replicating) < s.max_loaded_voices:
            return None
        unpinned = [v for v in s.loaded_voices if v not in s.pinned_voices and v not in protect
                    and v not in self.evicting]
        return next((v for v in unpinned if v not in s.voices_queued), unpinned[0] if unpinned else None)

    def holds(self, voice: str) -> bool:
        """Loaded or loading here (a copy that exists, or will in a load's time), by its last poll."""
        s = self.stats
        return s is not None and (voice in s.loaded_voices or voice in s.voices_loading)

    def has_loaded(self, voice: str) -> bool:
        """Loaded here by its last poll: a request for it would start without a load. Only these are a voice's
        holders for routing; a worker still loading it is not."""
        s = self.stats
        return s is not None and voice in s.loaded_voices and voice not in self.evicting

    def settle_evictions(self) -> None:
        """After a poll: forget the evictions expected of loads that are done (or will not happen), and of victims
        gone already: the poll is the truth again."""
        s = self.stats
        if s is None:
            return
        for victim, cause in list(self.evicting.items()):
            if cause in s.loaded_voices or victim not in s.loaded_voices or (
                    cause not in s.voices_loading and cause not in s.voices_queued
                    and cause not in s.voices_replicating and cause not in self.voices_sent):
                del self.evicting[victim]

    def expect_eviction(self, loading: str, protect: frozenset[str] = frozenset()) -> None:
        """A load of `loading` is on its way here: the voice it will evict (by the worker's LRU, sparing `protect`)
        stops counting as held."""
        victim = self.eviction_victim(protect)
        if victim is not None and victim != loading:
            self.evicting[victim] = loading

    def expected_finish(self, chars: int, reference: float) -> float:
        """When a new request would finish here: its own cost, after the admitted work (plus what was sent since
        the poll) it must wait for: all of it one at a time, on a batching worker only what frees a place
        (`finish.expected_finish`)."""
        s = self.stats
        if s is None:
            queued = 0.0
        elif s.seconds_per_char > 0:
            queued = s.queued_work_seconds
        else:  # a cold worker reports no work it cannot price: price its admitted text at the peers' speed
            queued = s.queued_chars * reference
        return expected_finish(self.cost(chars, reference), queued + self.work_since_poll, self.admitted,
                               self.max_batch)


class Chooser(Protocol):
    def choose(self, candidates: Sequence[WorkerState], chars: int, reference: float,
               voice_load: Optional[Mapping[str, float]] = None,
               held: frozenset[str] = frozenset()) -> WorkerState: ...


class Replicas(Protocol):
    """Watches each voice's pressure and asks for a background copy (`replicate.Replicator`)."""

    def consider(self, voice: str, healthy: Sequence[WorkerState], chars: int, reference: float,
                 load_seconds: float) -> None: ...


class Lease:
    """One request's hold on one worker. Exactly one outcome settles it; later calls are ignored."""

    def __init__(self, pool: "WorkerPool", worker: WorkerState, probe: bool, held_elsewhere: bool = False) -> None:
        self.pool = pool
        self.worker = worker
        self.probe = probe
        #: another worker had the request's voice loaded when it was routed (the worker counts the request if it
        #: waits for that voice's load all the same)
        self.held_elsewhere = held_elsewhere
        self.settled = False

    def succeeded(self) -> None:
        """A complete 2xx answer."""
        self.settle(Outcome.SUCCEEDED)

    def failed(self, reason: str) -> None:
        """A gateway failure: connect error, broken connection, 5xx answer or a stream cut by the worker."""
        self.settle(Outcome.FAILED, reason)

    def rejected(self, reason: str) -> None:
        """A 4xx answer from the worker for a request the router had validated."""
        self.settle(Outcome.REJECTED, reason)

    def refused(self, retry_after: Optional[int] = None) -> None:
        """A 503 (full or draining): the worker's slot was not ours; says nothing about its health, but it is held
        out of the choice for a while (`retry_after`: its own estimate, an upper bound on the hold)."""
        self.settle(Outcome.REFUSED, retry_after=retry_after)

    def abandoned(self) -> None:
        """The client left, or the worker's own deadline passed: nothing to learn about its health."""
        self.settle(Outcome.ABANDONED)

    def answered(self, status: int, reason: str = "", retry_after: Optional[int] = None) -> Outcome:
        """The worker's complete answer settles the lease by the one map (`outcome.answer_outcome`)."""
        outcome = answer_outcome(status)
        self.settle(outcome, reason or f"answered {status}", retry_after)
        return outcome

    def settle(self, outcome: Outcome, reason: str = "", retry_after: Optional[int] = None) -> None:
        if self.settled:
            return
        self.settled = True
        if outcome is Outcome.REFUSED:
            self.pool.hold_out(self.worker, retry_after)
        self.pool._settle(self, outcome, reason)


class WorkerPool:
    def __init__(
        self,
        client: aiohttp.ClientSession,
        poll_interval: float,
        stale_after: float,
        eject_after: int,
        rules: Optional[OutlierRules] = None,
        voice_affinity: bool = True,
    ) -> None:
        self.client = client
        self.voice_affinity = voice_affinity
        # Whether a worker serves the cluster's default voice now (the router's DefaultVoice decides).
        self._default_ready: Callable[[WorkerState], bool] = lambda _w: True
        self._poll_timeout = aiohttp.ClientTimeout(total=max(0.5, stale_after))
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.eject_after = eject_after
        self.rules = rules or OutlierRules(consecutive_failures=eject_after)
        self.workers: dict[str, WorkerState] = {}
        self.changed = asyncio.Event()  # set whenever a poll lands or a slot frees, so waiters re-check
        self.ejections: dict[str, int] = {}  # by worker name, for ttsc_router_ejections_total
        # Voice-aware routing's background copies of voices under pressure (set by the service; None: never).
        self.replicas: Optional[Replicas] = None

    def follow_default_voice(self, ready: Callable[[WorkerState], bool]) -> None:
        """Requests for the default voice go only to workers for which `ready` holds (the router's DefaultVoice
        decides which serve the cluster's default weights now)."""
        self._default_ready = ready

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
            known = self.workers.get(url)
            if known is None:
                state = WorkerState(url=url, given_name=target.name, outcomes=Outcomes(window=self.rules.window))
                self.workers[url] = state
                state.poller = asyncio.create_task(self._poll_forever(state), name=f"poll {url}")
                log_fields(log, "worker added", worker=url, name=state.name)
            else:
                state = known
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
        started = time.monotonic()
        try:
            async with self.client.get(f"{state.url}/stats", timeout=self._poll_timeout) as r:
                r.raise_for_status()
                stats = WorkerStats.model_validate_json(await r.read())
        except (TimeoutError, aiohttp.ClientError, ValueError, ValidationError) as exc:
            state.poll_failures += 1
            if state.poll_failures >= self.eject_after:
                if not state.ejected:
                    self._eject(state, UNREACHABLE, f"poll: {type(exc).__name__}: {exc}")
                else:  # down, whatever ejected it first: the first good poll (a restarted process) re-admits it
                    state.ejected_reason = UNREACHABLE
            return
        state.stats = stats
        state.polled_at = time.monotonic()
        state.ever_polled = True
        state.poll_failures = 0
        # What was sent while the poll was in flight may not be in it yet: keep only that part.
        state.sent_since_poll = max(0, state.sent_since_poll - sent_before)
        state.work_since_poll = max(0.0, state.work_since_poll - work_before)
        seen = started - IN_POLL_MARGIN_SECONDS
        for voice in [v for v, at in state.voices_sent.items() if at < seen]:
            del state.voices_sent[voice]
        state.settle_evictions()
        if state.ejected and state.ejected_reason == UNREACHABLE:
            self._readmit(state, "answering polls again")
        self.changed.set()

    # -- routing ---------------------------------------------------------------------------------------------
    def reference_seconds_per_char(self) -> float:
        """The peers' measured speed (median over workers that measured one), for pricing a cold worker."""
        measured = [w.stats.seconds_per_char for w in self.workers.values()
                    if w.stats is not None and w.stats.seconds_per_char > 0]
        return statistics.median(measured) if measured else DEFAULT_SECONDS_PER_CHAR

    def known_voice(self, voice: str) -> bool:
        """Whether some worker's catalog has `voice` by that name."""
        return any(w.stats is not None and voice in w.stats.voices for w in self.ordered())

    def check_voice(self, voice: Optional[str]) -> None:
        """Raise UnknownVoice when the workers that have reported their catalogs all lack `voice`."""
        if voice is None:
            return
        reported = [w.stats for w in self.ordered() if w.stats is not None]
        known = sorted({v for s in reported for v in s.voices})
        if reported and voice not in known:
            raise UnknownVoice(f"voice: {voice!r} is not in the voice catalog ({', '.join(known) or 'none'})")

    def voice_load_seconds(self, name: str) -> float:
        """A voice's load time: the median of the workers' last measured ones, else DEFAULT_VOICE_LOAD_SECONDS."""
        measured = [w.stats.voice_load_seconds[name] for w in self.workers.values()
                    if w.stats is not None and name in w.stats.voice_load_seconds]
        return statistics.median(measured) if measured else DEFAULT_VOICE_LOAD_SECONDS

    def _voice_loads(self, candidates: Sequence[WorkerState], voice: Optional[str]) -> dict[str, float]:
        """What sending `voice` to each candidate costs beyond its queue: nothing where it is held (or on its way);
        elsewhere the load, which also holds up every request admitted there, plus the load of the voice it would
        evict when no other worker holds that one (its next request pays it). Priced so, a second worker loads a
        voice only when the queue where it is held is longer than all that, and loads stay rare enough for the
        cluster to keep up."""
        if voice is None:
            return {}
        workers = self.ordered()
        load_of = self.voice_load_seconds
        default = load_of(voice)
        costs: dict[str, float] = {}
        for w in candidates:
            load = w.voice_load(voice, default)
            if load > 0:
                load *= 1 + w.admitted
                victim = w.eviction_victim()
                if victim is not None and not any(o.holds(victim) for o in workers if o is not w):
                    load += load_of(victim)
            costs[w.url] = load
        return costs

    async def reserve(self, chars: int, exclude: set[str], policy: Chooser, wait: float,
                      voice: Optional[str] = None) -> Optional[Lease]:
        """A lease on a worker with room that serves `voice` (URLs in `exclude` are skipped), waiting up to `wait`
        seconds for a slot to free; None if none does. A worker whose ejection is over gets the request as its
        probe first. Voice-aware, a voice goes only to workers that have it loaded while any has (a worker still
        loading it is not one), waiting for a slot there rather than loading another copy for one request;
        another copy is `replicas`' to start, in the background."""
        deadline = time.monotonic() + wait
        while True:
            now = time.monotonic()
            live = [w for w in self.ordered() if w.url not in exclude and w.has_room() and not w.refusing(now)
                    and w.serves(voice)
                    and (voice is not None or self._default_ready(w))]
            probes = [w for w in live if w.probe_due(now, self.stale_after)]
            if probes:
                return self._lease(probes[0], chars, probe=True, voice=voice,
                                   held_elsewhere=self._held_elsewhere(voice, probes[0], now))
            found = [w for w in live if w.healthy(now, self.stale_after)]
            trusted = [w for w in found if not suspect(w.outcomes, self._peer_outcomes(w), self.rules)]
            found = trusted or found
            # Voice-blind (benchmark comparison): least-work as if every worker held every voice.
            affine = voice if self.voice_affinity else None
            held = frozenset(w.url for w in found if affine is not None and w.has_loaded(affine))
            if found and (held or affine is None or now >= deadline or not self._holder_busy(affine, exclude, now)):
                reference = self.reference_seconds_per_char()
                chosen = policy.choose(found, chars, reference, self._voice_loads(found, affine), held)
                if affine is not None and self.replicas is not None:
                    healthy = [w for w in self.ordered() if w.healthy(now, self.stale_after)]
                    self.replicas.consider(affine, healthy, chars, reference, self.voice_load_seconds(affine))
                elsewhere = self._held_elsewhere(voice, chosen, now)
                if elsewhere and affine is not None and not chosen.has_loaded(affine):
                    # Every holder is full, refusing or tried already, and the wait for one ran out.
                    log_fields(log, "request sent to load its voice while another worker holds it", logging.WARNING,
                               voice=affine, worker=chosen.name, waited_s=round(now - deadline + wait, 3))
                return self._lease(chosen, chars, False, voice=affine, held_elsewhere=elsewhere)
            remaining = deadline - now
            if remaining <= 0:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return None

    def _holder_busy(self, voice: str, exclude: set[str], now: float) -> bool:
        """Some healthy worker not yet tried has `voice` loaded but no room (or is refusing) now: worth waiting for
        one of its slots rather than loading another copy for this one request."""
        return any(w.has_loaded(voice) and w.url not in exclude and w.healthy(now, self.stale_after)
                   for w in self.ordered())

    def _held_elsewhere(self, voice: Optional[str], chosen: WorkerState, now: float) -> bool:
        return voice is not None and any(w is not chosen and w.has_loaded(voice) and w.healthy(now, self.stale_after)
                                         for w in self.ordered())

    def _lease(self, worker: WorkerState, chars: int, probe: bool, voice: Optional[str] = None,
               held_elsewhere: bool = False) -> Lease:
        if voice is not None:  # bounded by the catalog's voices; each poll removes those it has seen
            s = worker.stats
            if (s is not None and voice not in worker.voices_sent and not worker.holds(voice)
                    and voice not in s.voices_queued and voice not in s.voices_replicating):
                worker.expect_eviction(voice)  # this request loads it there
            worker.voices_sent[voice] = time.monotonic()
        worker.routed += 1
        worker.in_flight += 1
        worker.sent_since_poll += 1
        worker.work_since_poll += worker.work(chars, self.reference_seconds_per_char())
        if probe:
            worker.probing = True
            log_fields(log, "probing ejected worker", worker=worker.url, name=worker.name)
        return Lease(self, worker, probe, held_elsewhere)

    def hold_out(self, w: WorkerState, retry_after: Optional[int]) -> None:
        """`w` answered 503: no request goes there for a while, longer for each 503 in a row."""
        w.refusals += 1
        hold = min(REFUSAL_HOLD_SECONDS * 2.0 ** min(w.refusals - 1, 16), REFUSAL_HOLD_MAX_SECONDS)
        if retry_after is not None:
            hold = min(hold, max(float(retry_after), REFUSAL_HOLD_SECONDS))
        w.refused_until = time.monotonic() + hold

    def _settle(self, lease: Lease, outcome: Outcome, reason: str) -> None:
        w = lease.worker
        w.in_flight -= 1
        if outcome.admitted:  # its refusals in a row are over
            w.refusals, w.refused_until = 0, 0.0
        if lease.probe:
            w.probing = False
        if outcome is Outcome.SUCCEEDED:
            w.completed += 1
            w.outcomes.add(error=False, gateway_failure=False)
            if lease.probe and w.ejected:
                self._readmit(w, "probe succeeded")
        elif outcome in (Outcome.FAILED, Outcome.REJECTED):
            if outcome is Outcome.FAILED:
                w.failed += 1
            w.outcomes.add(error=True, gateway_failure=outcome is Outcome.FAILED)
            if lease.probe and w.ejected:
                self._eject(w, "probe failed", reason, force=True)
        if outcome.judges_health:
            # Any outcome can make a worker stand out, its own or a peer's (a suspect's peers answering well).
            for other in self.ordered():
                # Only a worker with errors or failures enough of its own can stand out: peers are read only then.
                if not other.ejected and (other.outcomes.consecutive_failures >= self.rules.consecutive_failures
                                          or other.outcomes.errors >= self.rules.min_volume * self.rules.min_error_rate):
                    why = ejection_reason(other.outcomes, self._peer_outcomes(other), self.rules)
                    if why is not None:
                        self._eject(other, why, reason if other is w else "its peers answer well")
        self.changed.set()

    # -- health ----------------------------------------------------------------------------------------------
    def doubtful(self, w: WorkerState) -> bool:
        """Whether a refusal from `w` should be retried on a peer instead of passed on (see `health.doubtful`)."""
        return doubtful(w.outcomes, self._peer_outcomes(w), self.rules)

    def _peer_outcomes(self, w: WorkerState) -> list[Outcomes]:
        return [p.outcomes for p in self.workers.values() if p is not w and not p.ejected]

    def _eject(self, w: WorkerState, why: str, last_error: str, force: bool = False) -> None:
        if why != UNREACHABLE and not force:
            ejected_now = sum(1 for p in self.workers.values() if p.ejected)
            if not may_eject(ejected_now, len(self.workers), self.rules):
                log_fields(log, "worker not ejected: ejection cap reached", logging.WARNING, worker=w.url,
                           reason=why, ejected=ejected_now, workers=len(self.workers))
                return
        seconds = ejection_seconds(w.times_ejected, self.rules)
        w.ejected, w.ejected_reason = True, why
        w.ejected_until = time.monotonic() + seconds
        w.times_ejected += 1
        self.ejections[w.name] = self.ejections.get(w.name, 0) + 1
        log_fields(log, "worker ejected", logging.WARNING, worker=w.url, name=w.name, reason=why,
                   last_error=last_error, seconds=None if why == UNREACHABLE else seconds)
        self.changed.set()

    def _readmit(self, w: WorkerState, why: str) -> None:
        w.ejected, w.ejected_reason, w.probing = False, "", False
        w.times_ejected = max(0, w.times_ejected - 1)
        w.outcomes.clear()
        log_fields(log, "worker re-admitted", worker=w.url, name=w.name, reason=why)
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

    def retry_after(self) -> int:
        """When a slot is likely free on the soonest worker: the estimate that worker itself last reported, so a
        client hears the same policy (`tts_common.retry_after`) from the router as from a worker."""
        waits = [w.stats.retry_after_seconds for w in self.healthy() if w.stats is not None]
        return min(waits) if waits else 1
