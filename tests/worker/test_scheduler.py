"""The worker's scheduler in-process, on the synthetic engine: admission, a job's typed stream and its outcomes,
without HTTP. The real-process tests (test_queue.py, test_sigterm.py) check the same through the routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from tts_common.schemas import TTSRequest
from tts_worker.engines.base import EngineError, StreamMode, SynthesisParams
from tts_worker.engines.synthetic import SyntheticEngine
from tts_worker.metrics import WorkerMetrics
from tts_worker.scheduler import DeadlinePassed, Draining, JobOutcome, QueueFull, Scheduler

pytestmark = pytest.mark.unit

RATE = 16000


def params(text: str = "One. Two.", mode: StreamMode = StreamMode.SEGMENT) -> SynthesisParams:
    req = TTSRequest(text=text, text_lang="en", prompt_lang="en", ref_audio_path="ref.wav", fragment_interval=0.0)
    return SynthesisParams(request=req, mode=mode, ref_audio=Path(__file__), max_audio_seconds=600.0)


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    engine = SyntheticEngine(base_seconds=0.05, seconds_per_char=0.0, sample_rate=RATE)
    s = Scheduler(engine, max_queue_size=2, metrics=WorkerMetrics("w", "synthetic", "cpu"))
    s.start()
    yield s
    await s.close()


def never() -> "asyncio.Future[None]":
    return asyncio.get_running_loop().create_future()


async def test_a_job_streams_its_chunks_and_ends_ok(scheduler):
    job = scheduler.submit(params(), "a", time.monotonic() + 30)
    chunks = [c async for c in scheduler.chunks(job, never())]
    assert len(chunks) == 2 and all(isinstance(c, np.ndarray) and len(c) for c in chunks)
    assert job.outcome is JobOutcome.OK and job.samples == sum(len(c) for c in chunks)
    assert scheduler.counters.processed == 1 and scheduler.admitted == 0


async def test_admission_is_bounded_and_refusals_say_when_to_retry(scheduler):
    jobs = [scheduler.submit(params(), f"j{i}", time.monotonic() + 30) for i in range(2)]
    with pytest.raises(QueueFull) as full:
        scheduler.submit(params(), "over", time.monotonic() + 30)
    assert full.value.retry_after >= 1 and scheduler.counters.rejected == 1
    for job in jobs:
        assert [c async for c in scheduler.chunks(job, never())]
    scheduler.begin_drain()
    with pytest.raises(Draining):
        scheduler.submit(params(), "late", time.monotonic() + 30)


async def test_a_client_that_leaves_while_queued_costs_no_synthesis(scheduler):
    first = scheduler.submit(params(), "first", time.monotonic() + 30)
    queued = scheduler.submit(params(), "queued", time.monotonic() + 30)
    scheduler.cancel(queued, JobOutcome.CANCELLED)
    assert queued.outcome is JobOutcome.CANCELLED and queued.started_at is None
    assert [c async for c in scheduler.chunks(first, never())]
    assert scheduler.counters.started == 1 and scheduler.counters.cancelled == 1


async def test_a_deadline_ends_the_stream_with_a_typed_error(scheduler):
    job = scheduler.submit(params(), "late", time.monotonic() + 0.01)
    with pytest.raises(DeadlinePassed):
        async for _ in scheduler.chunks(job, never()):
            pass
    assert await scheduler.wait_idle(5)  # the engine stops at its next chunk, then the job is settled
    assert job.outcome is JobOutcome.TIMEOUT


async def test_an_engine_failure_is_an_engine_error_and_the_next_job_runs(scheduler):
    bad = scheduler.submit(params(text="   "), "bad", time.monotonic() + 30)  # nothing speakable
    with pytest.raises(EngineError):
        async for _ in scheduler.chunks(bad, never()):
            pass
    assert bad.outcome is JobOutcome.FAILED and scheduler.counters.failed == 1
    good = scheduler.submit(params(), "good", time.monotonic() + 30)
    assert [c async for c in scheduler.chunks(good, never())] and good.outcome is JobOutcome.OK


async def test_a_drain_that_runs_out_ends_every_admitted_job(scheduler):
    slow = SyntheticEngine(base_seconds=5.0, seconds_per_char=0.0, sample_rate=RATE)
    scheduler.engine = slow
    jobs = [scheduler.submit(params(), f"j{i}", time.monotonic() + 30) for i in range(2)]
    await asyncio.sleep(0.05)  # the first is running, the second waits
    scheduler.begin_drain()
    assert scheduler.abort_all() == 2
    for job in jobs:
        with pytest.raises(Draining):
            async for _ in scheduler.chunks(job, never()):
                pass
    assert await scheduler.wait_idle(5)  # the running one stops at its next chunk
    assert [job.outcome for job in jobs] == [JobOutcome.DRAINING, JobOutcome.DRAINING]


async def test_a_barrier_runs_after_the_jobs_admitted_before_it_and_before_later_ones():
    engine = SyntheticEngine(base_seconds=0.05, seconds_per_char=0.0, sample_rate=RATE)
    s = Scheduler(engine, max_queue_size=4, metrics=WorkerMetrics("w", "synthetic", "cpu"))
    s.start()
    try:
        before = [s.submit(params(), f"b{i}", time.monotonic() + 30) for i in range(2)]
        seen: dict[str, object] = {}

        def switch() -> str:  # runs on the engine thread, as a weight switch does
            seen["before"] = [j.outcome for j in before]
            seen["after_started"] = after.started_at
            return "switched"

        barrier = asyncio.ensure_future(s.run_after_admitted(switch))
        await asyncio.sleep(0)
        after = s.submit(params(), "a", time.monotonic() + 30)
        assert await barrier == "switched"
        for job in (*before, after):
            assert [c async for c in s.chunks(job, never())]
        assert seen == {"before": [JobOutcome.OK, JobOutcome.OK], "after_started": None}
    finally:
        await s.close()
