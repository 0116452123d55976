"""Bounded admission in front of one engine, run on one executor thread off the event loop.

One engine owns one device, so here exactly one synthesis runs at a time; up to `max_queue_size` requests are
admitted (waiting + running) and the rest are refused at once with an estimate of when to retry. A request whose
client left while waiting is removed before it reaches the engine, so no inference is wasted on it. A batching
engine is driven by `batch_scheduler.BatchScheduler` instead, which keeps this admission and changes only how
admitted jobs run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional, TypeVar, Union

import numpy as np

from tts_common.retry_after import retry_after_seconds
from tts_common.streaming import ClientGone
from tts_common.voices import Voice

from .engines.base import AudioTooLong, Cancelled, CancelToken, Engine, EngineError, SynthesisParams
from .metrics import WorkerMetrics

log = logging.getLogger("tts_worker.scheduler")
T = TypeVar("T")


class JobOutcome(StrEnum):
    """Where a job is in its life; the scheduler alone moves it."""

    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the client left
    TIMEOUT = "timeout"  # its deadline passed
    DRAINING = "draining"  # the drain ran out of time before it finished

    @property
    def final(self) -> bool:
        return self not in (JobOutcome.QUEUED, JobOutcome.RUNNING)


# -- what the stream raises: the route maps each to an HTTP answer -----------------------------------------------
# Most engine calls waiting behind admitted requests (weight switches): admin calls, but bounded all the same.
MAX_BARRIERS = 16
# Most background voice loads (replicas the router asked for) waiting or running at once: each holds up the queue
# behind it for a load's time, so a few are plenty (the router asks for one per voice under pressure).
MAX_BACKGROUND_LOADS = 2
# A background load waits for the engine to be idle (nothing admitted waiting) for at most this long, then takes its
# place in admission order like a weight switch: requests admitted meanwhile need not wait behind it, and a worker
# busy without a gap still gets its copy.
BACKGROUND_IDLE_WAIT_SECONDS = 2.0


class QueueFull(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("queue is full")
        self.retry_after = retry_after


class Draining(Exception):
    """Refused (new work while draining) or ended (the drain ran out of time): retry on another worker."""


class DeadlinePassed(Exception):
    pass


# -- what flows from the engine thread to the job's reader --------------------------------------------------------
@dataclass(frozen=True)
class _End:
    pass


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_Item = Union[np.ndarray, _End, _Failed]


def _detached(exc: BaseException) -> BaseException:
    """`exc` without its traceback, to hand to the loop: the traceback holds the engine thread's frames, which hold
    the job, whose stream holds `exc`: a cycle only the garbage collector's rare full pass frees, so every request a
    client left (its job cancelled) stayed in memory until then, growing an idle worker by MBs (issue 30)."""
    exc.__traceback__ = None
    return exc


def ending(job: "Job", error: Optional[BaseException]) -> tuple["JobOutcome", "_Item"]:
    """How a job's time in the engine ended: its outcome and the last item its reader gets. The one set of rules
    for both ways of running jobs (one at a time: `Scheduler._run`; batched: `BatchScheduler._take`): no error and
    audio made is done; no audio is a failure; the client leaving or its deadline (`Cancelled`) is a cancellation;
    an `EngineError` is the request's failure; anything else is an engine bug, logged, and the request's failure
    all the same (never a hung request)."""
    if error is None:
        if job.samples == 0:
            return JobOutcome.FAILED, _Failed(EngineError("the text produced no audio"))
        job.finished_at = time.monotonic()
        return JobOutcome.OK, _End()
    if isinstance(error, Cancelled):
        return JobOutcome.CANCELLED, _Failed(_detached(error))
    if isinstance(error, EngineError):
        return JobOutcome.FAILED, _Failed(_detached(error))
    log.error("engine failed on request %s", job.id, exc_info=error)
    return JobOutcome.FAILED, _Failed(EngineError(f"{type(error).__name__}: {error}"))


@dataclass
class Job:
    id: str
    params: SynthesisParams
    deadline: float = float("inf")
    admitted_at: float = field(default_factory=time.monotonic)
    cancel: CancelToken = field(default_factory=CancelToken)
    out: "asyncio.Queue[_Item]" = field(default_factory=asyncio.Queue)
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    first_chunk_at: Optional[float] = None
    samples: int = 0
    outcome: JobOutcome = JobOutcome.QUEUED
    cancel_reason: JobOutcome = JobOutcome.CANCELLED
    #: admission order (1, 2, ...): what a barrier (`run_after_admitted`) waits behind
    seq: int = 0
    #: engine seconds spent loading this job's voice before synthesis (0: it was held)
    load_seconds: float = 0.0
    #: voice loads the engine had done (or begun) when this job was admitted: more at its start means it waited
    loads_at_admission: int = 0
    waited_for_load: bool = False
    #: its own voice was not held here when it was admitted (or was evicted before it ran): it waited for that
    #: voice's load, its own or one queued before it
    voice_cold: bool = False
    #: the router saw another worker holding its voice when it sent it here (X-TTSC-Voice-Held-Elsewhere)
    held_elsewhere: bool = False
    #: the sample rate of this job's audio, fixed on the engine thread once its voice is held (a later eviction
    #: must not change what its answer says)
    rate: int = 0
    #: voices the requests queued behind this one want: a load for this one evicts them last
    spare_voices: frozenset[str] = frozenset()
    #: engine seconds this job used: its share of each batched step (a step's time over the requests in it)
    engine_seconds: float = 0.0
    #: the most requests it shared a batched step with, itself included (0: run by the one-at-a-time path)
    batch_peak: int = 0

    def audio_limit(self) -> float:
        """Most samples of audio it may produce at its rate (infinite: no limit, as in warm-up)."""
        seconds = self.params.max_audio_seconds
        return float("inf") if seconds is None else seconds * self.rate

    def count_audio(self, samples: int, limit: float) -> bool:
        """Count a chunk of its audio (the first one's time too); False once the audio is over `limit` samples."""
        if self.first_chunk_at is None:
            self.first_chunk_at = time.monotonic()
        self.samples += samples
        return self.samples <= limit

    @property
    def chars(self) -> int:
        return len(self.params.request.text or "")

    @property
    def queue_wait(self) -> float:
        return (self.started_at or time.monotonic()) - self.admitted_at

    @property
    def processing(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.monotonic()) - self.started_at


class _Ewma:
    def __init__(self, alpha: float, initial: float) -> None:
        self.alpha = alpha
        self.value = initial
        self.count = 0

    def add(self, x: float) -> None:
        self.value = x if self.count == 0 else self.alpha * x + (1 - self.alpha) * self.value
        self.count += 1


@dataclass
class Counters:
    processed: int = 0
    failed: int = 0
    rejected: int = 0
    cancelled: int = 0
    processing_total: float = 0.0
    queue_wait_total: float = 0.0
    started: int = 0
    audio_seconds: float = 0.0
    voice_load_waits: int = 0
    voice_own_load_waits: int = 0
    voice_load_waits_held_elsewhere: int = 0
    background_loads: int = 0


class Scheduler:
    def __init__(self, engine: Engine, max_queue_size: int, metrics: WorkerMetrics) -> None:
        self.engine = engine
        self.max_queue_size = max_queue_size
        self.metrics = metrics
        self.counters = Counters()
        self._pending: deque[Job] = deque()
        self._wakeup = asyncio.Event()
        self._running: Optional[Job] = None
        # Held for each job and for admin operations (weight switches), so those run only between requests.
        self._engine_lock = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._task: Optional[asyncio.Task[None]] = None
        # Seconds of engine time per character of text; seeded from the first request's measurement.
        self._per_char = _Ewma(alpha=0.2, initial=0.0)
        self._per_request = _Ewma(alpha=0.2, initial=0.0)
        self.draining = False
        self._admitted_count = 0
        # Engine calls that must run after every job admitted before them and before any admitted after them.
        self._barriers: deque[tuple[int, Callable[[], Any], asyncio.Future[Any]]] = deque()
        # Background voice loads asked for and not done yet (waiting as barriers, or running), by voice name.
        self._background: dict[str, BackgroundLoad] = {}

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._dispatch(), name="scheduler")

    async def close(self) -> None:
        # Stop the engine between chunks, so exiting never waits for a long synthesis nobody will receive.
        for job in list(self._pending):
            self.cancel(job, JobOutcome.CANCELLED)
        for running in self._engine_jobs():
            running.cancel.cancel()
        while self._barriers:
            _seq, _fn, future = self._barriers.popleft()
            future.cancel()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_in_engine_thread(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the engine's thread between requests (warm-up, catalog voices)."""
        async with self._engine_lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def run_after_admitted(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the engine's thread once every job admitted before this call has run, and before any job
        admitted after it: a weight switch changes the voice of later requests only, never of admitted ones."""
        if len(self._barriers) >= MAX_BARRIERS:
            raise QueueFull(self.retry_after())
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._barriers.append((self._admitted_count, fn, future))
        self._wakeup.set()
        return await future

    # -- load signal -----------------------------------------------------------------------------------------
    @property
    def max_batch(self) -> int:
        """Most jobs in the engine at once."""
        return 1

    def _engine_jobs(self) -> list[Job]:
        """The jobs in the engine now, in admission order."""
        return [self._running] if self._running is not None else []

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return len(self._engine_jobs())

    @property
    def admitted(self) -> int:
        return self.queue_depth + self.in_flight

    @property
    def seconds_per_char(self) -> float:
        """Wall seconds per character one request takes (at the concurrency it ran with)."""
        return self._per_char.value

    def _engine_seconds_per_char(self) -> float:
        """Engine seconds each character of admitted text will use: alone, its wall time."""
        return self._per_char.value

    @property
    def chars_per_second(self) -> float:
        """The engine's measured throughput: characters completed per second of engine time (0: unmeasured)."""
        per = self._engine_seconds_per_char()
        return 1.0 / per if per > 0 else 0.0

    @property
    def average_processing_time(self) -> float:
        c = self.counters
        return c.processing_total / c.processed if c.processed else 0.0

    def queued_chars(self) -> int:
        return sum(j.chars for j in (*self._pending, *self._engine_jobs()))

    def _remaining_seconds(self, job: Job) -> float:
        """Engine seconds a job in the engine still needs: its expected time less what it has run."""
        return max(0.0, job.chars * self._per_char.value - max(0.0, job.processing - job.load_seconds))

    def queued_work_seconds(self) -> float:
        """Expected engine seconds for everything admitted, voice loads included: what `least-work` routing
        compares."""
        chars = sum(j.chars for j in self._pending)
        running = self._engine_jobs()
        work = chars * self._engine_seconds_per_char() + sum(self._remaining_seconds(j) for j in running)
        # Each voice not held costs one load, however many admitted requests want it; a background load waiting or
        # running costs the same (it holds up the queue behind it), so the router's cost model sees it.
        wanted = {j.params.voice.name: j.params.voice for j in (*self._pending, *running) if j.params.voice}
        wanted.update({name: b.voice for name, b in self._background.items()})
        loaded, default = self.engine.loaded, self.engine.default_voice_load_seconds
        return work + sum(loaded.expected_load_seconds(n, v, default) for n, v in wanted.items())

    def voices_replicating(self) -> list[str]:
        """Voices asked to load in the background and not held yet (waiting for their turn, or loading)."""
        return list(self._background)

    def load_in_background(self, voice: Voice, protect: frozenset[str]) -> bool:
        """Load `voice` on the engine thread once nothing admitted waits (or, after BACKGROUND_IDLE_WAIT_SECONDS,
        once the jobs admitted before this call have run and before any admitted after it, as a weight switch):
        between syntheses, without a request waiting on it. The router
        asks this of a worker it wants as another holder of a voice under pressure, and routes the voice here only
        once /stats lists it as loaded. The load evicts no voice in `protect` (the router's sole copies) nor any
        voice the requests admitted here want; with nothing else to evict it loads nothing. False: held or already
        on its way (nothing to do). Raises Draining, or QueueFull while MAX_BACKGROUND_LOADS are under way."""
        if self.draining:
            raise Draining("worker is draining")
        if voice.name in self._background or self.engine.loaded.holds(voice.name, voice):
            return False
        if len(self._background) >= MAX_BACKGROUND_LOADS or len(self._barriers) >= MAX_BARRIERS:
            raise QueueFull(self.retry_after())
        load = BackgroundLoad(self, voice, protect)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._background[voice.name] = load
        future.add_done_callback(lambda f: self._background_done(load, f))
        self._barriers.append((self._admitted_count, load, future))
        self._wakeup.set()
        return True

    def _background_done(self, load: "BackgroundLoad", future: "asyncio.Future[None]") -> None:
        if self._background.get(load.voice.name) is load:
            del self._background[load.voice.name]
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.warning("background load of voice %s failed: %s", load.voice.name, exc)
        elif load.loaded:
            self.counters.background_loads += 1

    def voices_queued(self) -> list[str]:
        """The catalog voices admitted requests want, in admission order."""
        jobs = (*self._engine_jobs(), *self._pending)
        return list(dict.fromkeys(j.params.voice.name for j in jobs if j.params.voice))

    def _seconds_per_slot(self) -> float:
        """Seconds between two admission slots freeing while the engine is busy: one request's time, alone."""
        return self._per_request.value or self.average_processing_time

    def retry_after(self) -> int:
        """Seconds until a slot is likely free (the policy the router applies to its own 503s too)."""
        return retry_after_seconds(self.admitted, self.max_queue_size, self._seconds_per_slot())

    # -- admission and the job's stream ---------------------------------------------------------------------
    def submit(self, params: SynthesisParams, request_id: str, deadline: float, held_elsewhere: bool = False) -> Job:
        """Admit a job, or raise QueueFull (with when to retry) or Draining. `held_elsewhere`: the router saw
        another worker holding the job's voice (counted if the job waits for that voice's load here)."""
        if self.draining:
            self.counters.rejected += 1
            raise Draining("worker is draining")
        if self.admitted >= self.max_queue_size:
            self.counters.rejected += 1
            raise QueueFull(self.retry_after())
        loaded = self.engine.loaded
        self._admitted_count += 1
        voice = params.voice
        job = Job(id=request_id, params=params, deadline=deadline, seq=self._admitted_count,
                  loads_at_admission=loaded.loads + len(loaded.loading()), held_elsewhere=held_elsewhere,
                  voice_cold=(voice is not None and self.engine.serves_voices
                              and not loaded.holds(voice.name, voice)))
        self._pending.append(job)
        self._idle.clear()
        self._wakeup.set()
        return job

    async def chunks(self, job: Job, gone: "asyncio.Future[None]") -> AsyncGenerator[np.ndarray, None]:
        """The job's PCM chunks as the engine makes them. Raises DeadlinePassed, ClientGone (when `gone` completes
        first), Draining, Cancelled or EngineError, and always leaves the job settled: a reader that stops early
        (its client left mid-stream) cancels it."""
        try:
            while True:
                item = await self._next(job, gone)
                if isinstance(item, _End):
                    return
                if isinstance(item, _Failed):
                    if isinstance(item.error, Cancelled) and job.cancel_reason is JobOutcome.DRAINING:
                        raise Draining("the drain ran out of time") from item.error
                    raise item.error
                yield item
        finally:
            if not job.outcome.final:  # the reader stopped early: its client left mid-stream
                self.cancel(job, job.cancel_reason)

    async def _next(self, job: Job, gone: "asyncio.Future[None]") -> _Item:
        remaining = job.deadline - time.monotonic()
        if remaining > 0:
            getter: "asyncio.Future[_Item]" = asyncio.ensure_future(job.out.get())
            waiting: "set[asyncio.Future[Any]]" = {getter, gone}
            done, _ = await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                return getter.result()
            getter.cancel()
            if gone in done:
                self.cancel(job, JobOutcome.CANCELLED)
                raise ClientGone()
        self.cancel(job, JobOutcome.TIMEOUT)
        raise DeadlinePassed()

    def cancel(self, job: Job, outcome: JobOutcome) -> None:
        """The client left or its deadline passed: drop it if still waiting, else stop the engine between chunks."""
        if job.outcome.final:
            return
        job.cancel_reason = outcome
        job.cancel.cancel()
        if job.outcome is JobOutcome.QUEUED:
            try:
                self._pending.remove(job)
            except ValueError:
                pass
            else:
                self._finish(job, outcome)
                self._update_idle()

    def begin_drain(self) -> None:
        """Refuse new jobs from now on; admitted ones go on."""
        self.draining = True

    def abort_all(self) -> int:
        """The drain ran out of time: end every admitted job now, so each route answers (503 before its first byte,
        a cut stream after) instead of uvicorn's plain 500 at exit. The engine stops at its next chunk."""
        jobs = list(self._pending) + self._engine_jobs()
        for job in jobs:
            self.cancel(job, JobOutcome.DRAINING)
            job.out.put_nowait(_Failed(Cancelled("draining")))  # its reader is waiting on this job's stream
        return len(jobs)

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def _update_idle(self) -> None:
        if not self._pending and not self._engine_jobs():
            self._idle.set()

    # -- execution -------------------------------------------------------------------------------------------
    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending and not self._barriers:
                self._wakeup.clear()
                await self._wakeup.wait()
            async with self._engine_lock:
                if self._barriers and (not self._pending or self._pending[0].seq > self._barrier_seq()):
                    await self._run_barrier(loop)
                    continue
                if not self._pending:
                    continue
                await self._serve(loop)

    def _barrier_seq(self) -> float:
        """The admission number the first barrier waits behind: a background load still within its idle wait lets
        every admitted job go first (it runs once the queue is empty), then waits behind those admitted before it."""
        seq, fn, _future = self._barriers[0]
        if isinstance(fn, BackgroundLoad) and time.monotonic() < fn.idle_until:
            return float("inf")
        return seq

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run admitted work, holding the engine (one job here; a batch in BatchScheduler)."""
        job = self._pending.popleft()
        job.spare_voices = frozenset(j.params.voice.name for j in self._pending if j.params.voice)
        job.outcome = JobOutcome.RUNNING
        job.started_at = time.monotonic()
        self._running = job
        self.metrics.queue_wait.observe(job.queue_wait)
        try:
            await loop.run_in_executor(self._executor, self._run, job, loop)
        except Exception:  # the executor itself failed; the job must still be answered
            log.exception("engine thread failed")
        if job.outcome is JobOutcome.RUNNING:
            self._settle(job, JobOutcome.FAILED, _Failed(EngineError("engine thread failed")))

    async def _run_barrier(self, loop: asyncio.AbstractEventLoop) -> None:
        _seq, fn, future = self._barriers.popleft()
        if future.done():  # its caller gave up (timed out, left): a switch nobody waits for is not made
            return
        if isinstance(fn, BackgroundLoad):  # read here, on the loop: the voices the admitted requests want now
            fn.spare = frozenset(self.voices_queued())
        try:
            result = await loop.run_in_executor(self._executor, fn)
        except Exception as exc:  # noqa: BLE001 - the caller's to answer
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)

    def _settle(self, job: Job, outcome: JobOutcome, last: _Item) -> None:
        """On the loop: record the outcome, then close the job's stream, so whoever reads the last item sees
        final stats and a free engine."""
        if job.outcome is JobOutcome.RUNNING:
            self._finish(job, job.cancel_reason if outcome is JobOutcome.CANCELLED else outcome)
        self._release(job)
        self._update_idle()
        job.out.put_nowait(last)

    def _release(self, job: Job) -> None:
        """The job has left the engine."""
        if self._running is job:
            self._running = None

    def _run(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        """Runs on the engine thread: stream chunks to the event loop as they come."""

        def put(item: np.ndarray) -> None:
            loop.call_soon_threadsafe(job.out.put_nowait, item)

        def settle(outcome: JobOutcome, last: _Item) -> None:
            loop.call_soon_threadsafe(self._settle, job, outcome, last)

        error: Optional[Exception] = None
        try:
            self._load_voice(job)
            job.rate = self.engine.output_rate(job.params)
            for chunk in self.engine.synthesize(job.params, job.cancel):
                job.cancel.check()
                if len(chunk) == 0:
                    continue
                if not job.count_audio(len(chunk), job.audio_limit()):
                    raise AudioTooLong(job.params.max_audio_seconds or 0.0)
                put(chunk)
        except Exception as exc:  # every error, an engine bug too, becomes the job's answer: never a hung request
            error = exc
        settle(*ending(job, error))

    def _load_voice(self, job: Job) -> None:
        """On the engine thread: hold the job's voice before its synthesis starts, timed apart from synthesis so
        a load never inflates the measured seconds per character."""
        voice, loaded = job.params.voice, self.engine.loaded
        if voice is not None and self.engine.serves_voices and not loaded.holds(voice.name, voice):
            t0 = time.monotonic()
            result = "error"
            try:
                self.engine.prepare_voice(voice, job.cancel, job.spare_voices)
                result = "ok"
            except Cancelled:
                result = "cancelled"
                raise
            finally:
                job.load_seconds = time.monotonic() - t0
                self.metrics.voice_load.labels(voice=voice.name, result=result).observe(job.load_seconds)
        job.waited_for_load = job.load_seconds > 0 or loaded.loads > job.loads_at_admission
        job.voice_cold = job.voice_cold or job.load_seconds > 0

    def _finish(self, job: Job, outcome: JobOutcome) -> None:
        job.outcome = outcome
        job.finished_at = job.finished_at or time.monotonic()
        c = self.counters
        if job.started_at is not None:
            c.started += 1
            c.queue_wait_total += job.queue_wait
        if job.waited_for_load:
            c.voice_load_waits += 1
            self.metrics.voice_load_waits.inc()
        if job.voice_cold and job.started_at is not None:
            c.voice_own_load_waits += 1
            c.voice_load_waits_held_elsewhere += job.held_elsewhere
            if job.held_elsewhere:  # the router had another holder: here it was evicted, or never held
                log.warning("request %s waited for its voice %s to load though the router saw another worker "
                            "holding it (load %.3f s here)", job.id, job.params.voice.name if job.params.voice
                            else None, job.load_seconds)
        if outcome is JobOutcome.OK:
            c.processed += 1
            c.processing_total += job.processing
            seconds = job.samples / (job.rate or self.engine.sample_rate)
            c.audio_seconds += seconds
            self.metrics.processing.observe(job.processing)
            self.metrics.audio_seconds.inc(seconds)
            if job.first_chunk_at is not None:
                self.metrics.first_chunk.observe(job.first_chunk_at - job.admitted_at)
            self._per_request.add(job.processing)
            if job.chars:
                self._per_char.add(max(0.0, job.processing - job.load_seconds) / job.chars)
        elif outcome is JobOutcome.CANCELLED:
            c.cancelled += 1
        else:
            c.failed += 1



class BackgroundLoad:
    """One background voice load, run on the engine thread as a barrier (`Scheduler.load_in_background`)."""

    def __init__(self, scheduler: Scheduler, voice: Voice, protect: frozenset[str]) -> None:
        self.scheduler = scheduler
        self.voice = voice
        self.protect = protect
        self.spare: frozenset[str] = frozenset()  # set on the loop just before it runs
        self.loaded = False
        self.idle_until = time.monotonic() + BACKGROUND_IDLE_WAIT_SECONDS

    def __call__(self) -> None:
        engine, voice = self.scheduler.engine, self.voice
        if engine.loaded.holds(voice.name, voice):
            return
        t0 = time.monotonic()
        result = "error"
        try:
            # Hard protection for what the admitted requests want too: a replica must not make them load again.
            engine.prepare_voice(voice, CancelToken(), self.spare, self.protect | self.spare)
            result = "ok"
            self.loaded = True
        finally:
            self.scheduler.metrics.voice_load.labels(voice=voice.name, result=result).observe(time.monotonic() - t0)
