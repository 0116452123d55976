"""Batched execution, for an engine that serves several requests at once (`Engine.max_batch` > 1).

Admission, the bounded queue, deadlines, cancellation, barriers and drains stay the `Scheduler`'s; what changes is
how admitted jobs run. Up to `max_batch` of them are in the engine's `BatchSession` at once, advanced by one step
per call on the engine thread. Between steps, on the event loop, jobs that left (client gone, deadline, drain) are
dropped and queued ones join, so a freed place is taken at the very next step. When the engine is idle, the first
arrival waits up to `batch_wait` seconds for others, so requests that arrive together also start together.

Each step's time is shared among the jobs in it: a job's `engine_seconds` is what it cost the engine, so the
measured engine seconds per character (whose inverse /stats reports as `chars_per_second`) is the engine's
aggregate speed at the concurrency it has been running, and `queued_work_seconds` prices admitted work with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from .engines.base import AudioTooLong, Cancelled, Engine, EngineError
from .engines.batch import BatchSession, StepOutput
from .metrics import WorkerMetrics
from .scheduler import Job, JobOutcome, Scheduler, T, _Ewma, _Failed, ending

log = logging.getLogger("tts_worker.scheduler")


@dataclass
class _Round:
    """What one call on the engine thread did: jobs whose joining failed, and the step's outputs and time."""

    refused: dict[int, Exception] = field(default_factory=dict)
    outputs: list[StepOutput] = field(default_factory=list)
    seconds: float = 0.0


class BatchScheduler(Scheduler):
    def __init__(self, engine: Engine, max_queue_size: int, metrics: WorkerMetrics, max_batch: int,
                 batch_wait: float) -> None:
        super().__init__(engine, max_queue_size, metrics)
        # More than are ever admitted could never be in the engine at once.
        self._max_batch = max(1, min(max_batch, engine.max_batch, max_queue_size))
        self.batch_wait = batch_wait
        self._active: dict[int, Job] = {}  # by admission number, in admission order
        self._leaving: list[int] = []  # jobs that ended while the engine still holds them: dropped next round
        self._session: Optional[BatchSession] = None
        # Engine seconds per character and per request, each job charged its share of every step it was in.
        self._share_per_char = _Ewma(alpha=0.2, initial=0.0)
        self._share_per_request = _Ewma(alpha=0.2, initial=0.0)
        self._exclusive_waiting = 0

    # -- what the load signal reads --------------------------------------------------------------------------
    @property
    def max_batch(self) -> int:
        return self._max_batch

    def _engine_jobs(self) -> list[Job]:
        return list(self._active.values())

    def _engine_seconds_per_char(self) -> float:
        return self._share_per_char.value

    def _remaining_seconds(self, job: Job) -> float:
        return max(0.0, job.chars * self._share_per_char.value - job.engine_seconds)

    def _seconds_per_slot(self) -> float:
        # With the batch full, a place frees about every (one request's engine share) seconds.
        return self._share_per_request.value or self.average_processing_time / self._max_batch

    def _finish(self, job: Job, outcome: JobOutcome) -> None:
        super()._finish(job, outcome)
        if outcome is JobOutcome.OK:
            self._share_per_request.add(job.engine_seconds)
            if job.chars:
                self._share_per_char.add(job.engine_seconds / job.chars)

    def _release(self, job: Job) -> None:
        self._active.pop(job.seq, None)

    async def run_in_engine_thread(self, fn: Callable[[], T]) -> T:
        # Between requests, as on a one-at-a-time engine (a catalog change may release a voice a job uses): while
        # a caller waits, no job joins, so the batch empties and the caller gets the engine even under load.
        self._exclusive_waiting += 1
        try:
            return await super().run_in_engine_thread(fn)
        finally:
            self._exclusive_waiting -= 1

    # -- execution: the Scheduler's dispatch loop calls `_serve` with the engine held ------------------------
    async def _gather(self) -> None:
        """The idle engine's first arrival waits up to `batch_wait` for others, so they start in one step."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_wait
        while 0 < len(self._pending) < self._max_batch and (remaining := deadline - loop.time()) > 0:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """Step the batch until it is empty, taking in queued jobs between steps while admission allows."""
        await self._gather()
        while True:
            self._drop_cancelled()
            joining = self._join()
            if not self._active and not self._leaving:
                return
            leaving, self._leaving = self._leaving, []
            try:
                result = await loop.run_in_executor(self._executor, self._round, joining, leaving)
            except Exception:  # the engine failed for the whole batch: every job in it must still be answered
                log.exception("engine thread failed")
                session, self._session = self._session, None  # its state is unknown: the next batch starts afresh
                if session is not None:
                    try:
                        await loop.run_in_executor(self._executor, session.close)
                    except Exception:  # noqa: BLE001 - the failure is logged above; the jobs are answered below
                        log.exception("closing the failed batch failed")
                for job in self._engine_jobs():
                    self._settle(job, JobOutcome.FAILED, _Failed(EngineError("engine thread failed")))
                return
            self._deliver(result)

    def _drop_cancelled(self) -> None:
        """Jobs whose client left, whose deadline passed or that a drain ended: their place is free now."""
        for job in [j for j in self._active.values() if j.cancel.cancelled]:
            self._leaving.append(job.seq)
            self._settle(job, JobOutcome.CANCELLED, _Failed(Cancelled()))

    def _may_join(self, job: Job) -> bool:
        while self._barriers and self._barriers[0][2].done():  # a switch nobody waits for holds nobody up
            self._barriers.popleft()
        if self._barriers and job.seq > self._barrier_seq():
            return False  # admitted after a weight switch: it waits for the batch to empty and the switch
        return self._exclusive_waiting == 0

    def _join(self) -> list[Job]:
        joining: list[Job] = []
        while self._pending and len(self._active) < self._max_batch and self._may_join(self._pending[0]):
            job = self._pending.popleft()
            job.outcome = JobOutcome.RUNNING
            job.started_at = time.monotonic()
            self._active[job.seq] = job
            self.metrics.queue_wait.observe(job.queue_wait)
            joining.append(job)
        if joining:  # a voice load for a joiner evicts the voices other admitted jobs want last
            wanted = frozenset(j.params.voice.name for j in (*self._active.values(), *self._pending)
                               if j.params.voice)
            for job in joining:
                job.spare_voices = wanted
        return joining

    def _round(self, joining: list[Job], leaving: list[int]) -> _Round:
        """On the engine thread: drop who left, take in who joins (their voices loaded first), then one step."""
        if self._session is None:  # opened here: a real engine allocates its batch's memory on the device
            self._session = self.engine.open_batch()
        session = self._session
        for key in leaving:
            session.remove(key)
        result = _Round()
        for job in joining:
            t0 = time.monotonic()
            try:
                self._load_voice(job)
                job.rate = self.engine.output_rate(job.params)
                session.add(job.seq, job.params, job.cancel)
            except Exception as exc:  # noqa: BLE001 - this job's alone, answered on the loop
                result.refused[job.seq] = exc
            # Joining (a prefill on a real engine) is this job's own engine time; a voice load is not synthesis.
            job.engine_seconds += max(0.0, time.monotonic() - t0 - job.load_seconds)
        if session.active:
            t0 = time.monotonic()
            result.outputs = session.step()
            result.seconds = time.monotonic() - t0
        return result

    def _deliver(self, result: _Round) -> None:
        """On the loop: each job's chunks to its reader, and the outcome of each job that ended."""
        for seq, exc in result.refused.items():
            if (job := self._active.get(seq)) is not None:
                self._fail(job, exc)
        size = len(result.outputs)
        if size:
            self.metrics.batch_size.observe(size)
        for out in result.outputs:
            job = self._active.get(out.key)
            if job is None:
                continue
            job.engine_seconds += result.seconds / size
            job.batch_peak = max(job.batch_peak, size)
            if not job.cancel.cancelled:  # one that left during the step is dropped at the next round
                self._take(job, out)

    def _take(self, job: Job, out: StepOutput) -> None:
        limit = job.audio_limit()
        for chunk in out.chunks:
            if len(chunk) == 0:
                continue
            if not job.count_audio(len(chunk), limit):
                if not out.done and out.error is None:
                    self._leaving.append(job.seq)
                self._settle(job, *ending(job, AudioTooLong(job.params.max_audio_seconds or 0.0)))
                return
            job.out.put_nowait(chunk)
        if out.error is not None or out.done:
            self._settle(job, *ending(job, out.error))

    def _fail(self, job: Job, exc: Exception) -> None:
        self._settle(job, *ending(job, exc))
