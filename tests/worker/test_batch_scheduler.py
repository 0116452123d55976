"""The batched scheduler in-process, on the synthetic engine's batching cost model: several jobs in the engine at
once, each with the audio it would get alone, each ending alone (done, failed, cancelled, timed out), and the queue
and barriers of the one-at-a-time scheduler kept. test_batching.py checks the same through real worker processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tts_common.schemas import TTSRequest
from tts_worker.batch_scheduler import BatchScheduler
from tts_worker.engines.base import AudioTooLong, CancelToken, EngineError, StreamMode, SynthesisParams
from tts_worker.engines.synthetic import SyntheticEngine
from tts_worker.metrics import WorkerMetrics
from tts_worker.scheduler import DeadlinePassed, Draining, Job, JobOutcome, QueueFull, Scheduler
from tts_worker.service import make_scheduler
from tts_worker.settings import WorkerSettings

pytestmark = pytest.mark.unit

RATE = 16000
TEXT = "One. Two. Three."


def params(text: str = TEXT, mode: StreamMode = StreamMode.SEGMENT, max_audio_seconds: float = 600.0,
           fragment_interval: float = 0.1) -> SynthesisParams:
    req = TTSRequest(text=text, text_lang="en", prompt_lang="en", ref_audio_path="ref.wav",
                     fragment_interval=fragment_interval, min_chunk_length=4)
    return SynthesisParams(request=req, mode=mode, ref_audio=Path(__file__), max_audio_seconds=max_audio_seconds)


def engine(max_batch: int = 4, seconds_per_char: float = 0.01) -> SyntheticEngine:
    return SyntheticEngine(base_seconds=0.02, seconds_per_char=seconds_per_char, sample_rate=RATE,
                           max_batch=max_batch, batch_step_seconds=0.01, batch_alpha=0.3)


@pytest.fixture
async def scheduler() -> AsyncIterator[BatchScheduler]:
    s = BatchScheduler(engine(), max_queue_size=6, metrics=WorkerMetrics("w", "synthetic", "cpu"), max_batch=4,
                       batch_wait=0.05)
    s.start()
    yield s
    await s.close()


def never() -> "asyncio.Future[None]":
    return asyncio.get_running_loop().create_future()


def submit(s: Scheduler, p: SynthesisParams, name: str, timeout: float = 30.0) -> Job:
    return s.submit(p, name, time.monotonic() + timeout)


async def collect(s: Scheduler, job: Job) -> list[np.ndarray]:
    return [c async for c in s.chunks(job, never())]


def alone(p: SynthesisParams) -> list[np.ndarray]:
    """The chunks the one-at-a-time path makes for these parameters."""
    return list(engine(max_batch=1, seconds_per_char=0.0).synthesize(p, CancelToken()))


async def test_up_to_max_batch_jobs_are_in_the_engine_at_once_and_the_rest_queue(scheduler):
    jobs = [submit(scheduler, params(), f"j{i}") for i in range(6)]
    with pytest.raises(QueueFull):  # 4 in the engine and 2 waiting fill the 6 admitted places
        submit(scheduler, params(), "over")
    first = scheduler.chunks(jobs[0], never())
    await anext(first)
    assert (scheduler.in_flight, scheduler.queue_depth) == (4, 2)
    assert [j.outcome for j in jobs] == [JobOutcome.RUNNING] * 4 + [JobOutcome.QUEUED] * 2
    await first.aclose()  # its reader left: the job is cancelled and its place goes to the next
    results = await asyncio.gather(*(collect(scheduler, j) for j in jobs[1:]))
    assert all(len(chunks) == 3 for chunks in results)
    assert [j.outcome for j in jobs] == [JobOutcome.CANCELLED] + [JobOutcome.OK] * 5
    assert [j.batch_peak for j in jobs[:4]] == [4, 4, 4, 4]
    assert scheduler.counters.processed == 5 and scheduler.counters.cancelled == 1
    assert await scheduler.wait_idle(5) and scheduler.in_flight == 0


@pytest.mark.parametrize("mode", list(StreamMode))
async def test_each_job_gets_the_audio_it_would_get_alone(scheduler, mode):
    texts = [TEXT, "A longer sentence here. And one more!", "Short.", "Four; five; six."]
    jobs = [submit(scheduler, params(t, mode), t) for t in texts]
    results = await asyncio.gather(*(collect(scheduler, j) for j in jobs))
    assert max(j.batch_peak for j in jobs) > 1  # they shared steps
    for text, got in zip(texts, results, strict=True):
        want = alone(params(text, mode))
        assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want, strict=True)), text


async def test_a_cancelled_job_frees_its_place_for_a_queued_one_while_the_others_go_on(scheduler):
    long = "A long request. " * 8
    jobs = [submit(scheduler, params(long), f"j{i}") for i in range(5)]
    await asyncio.sleep(0.1)
    assert jobs[4].outcome is JobOutcome.QUEUED
    scheduler.cancel(jobs[0], JobOutcome.CANCELLED)
    while jobs[4].started_at is None:  # it joins at the next step, not when the batch is done
        await asyncio.sleep(0.005)
    assert all(j.outcome is JobOutcome.RUNNING for j in jobs[1:4])
    results = await asyncio.gather(*(collect(scheduler, j) for j in jobs[1:]))
    assert all(len(r) == 8 for r in results)
    assert jobs[0].outcome is JobOutcome.CANCELLED and [j.outcome for j in jobs[1:]] == [JobOutcome.OK] * 4


async def test_a_failure_or_a_deadline_ends_that_job_alone(scheduler):
    ok = submit(scheduler, params(), "ok")
    unspeakable = submit(scheduler, params("   "), "unspeakable")  # refused as it joins
    too_long = submit(scheduler, params("Far too long a sentence. " * 4, max_audio_seconds=2.0), "long")
    late = submit(scheduler, params("A slow one. " * 10), "late", timeout=0.15)
    with pytest.raises(EngineError, match="no speakable segment"):
        await collect(scheduler, unspeakable)
    with pytest.raises(AudioTooLong):
        await collect(scheduler, too_long)
    with pytest.raises(DeadlinePassed):
        await collect(scheduler, late)
    assert len(await collect(scheduler, ok)) == 3
    assert await scheduler.wait_idle(5)
    assert [j.outcome for j in (ok, unspeakable, too_long, late)] == [
        JobOutcome.OK, JobOutcome.FAILED, JobOutcome.FAILED, JobOutcome.TIMEOUT]
    assert too_long.samples > 0  # it streamed its first segments before passing the limit


async def test_throughput_is_measured_from_each_jobs_share_of_the_steps(scheduler):
    assert scheduler.chars_per_second == 0.0  # nothing measured yet
    jobs = [submit(scheduler, params(), f"j{i}") for i in range(4)]
    for job in jobs:
        await collect(scheduler, job)
    assert [j.batch_peak for j in jobs] == [4, 4, 4, 4]
    # Four at a time: each job used a quarter of each step it waited through, so the engine completes about four
    # times the characters per second that one request's wall time per character says.
    assert scheduler.chars_per_second * scheduler.seconds_per_char > 3
    # Admitted work is priced at that aggregate speed: four more jobs are about one job's wall time of work.
    more = [submit(scheduler, params(), f"m{i}") for i in range(4)]
    assert scheduler.queued_work_seconds() == pytest.approx(sum(j.chars for j in more) / scheduler.chars_per_second)
    for job in more:
        await collect(scheduler, job)


async def test_a_barrier_waits_for_the_batch_before_it_and_holds_back_later_jobs(scheduler):
    before = [submit(scheduler, params(), f"b{i}") for i in range(2)]
    seen: dict[str, object] = {}

    def switch() -> str:  # runs on the engine thread, as a weight switch does
        seen["before"] = [j.outcome for j in before]
        seen["after_started"] = after.started_at
        return "switched"

    barrier = asyncio.ensure_future(scheduler.run_after_admitted(switch))
    await asyncio.sleep(0)
    after = submit(scheduler, params(), "a")
    assert await barrier == "switched"
    for job in (*before, after):
        assert await collect(scheduler, job)
    assert seen == {"before": [JobOutcome.OK, JobOutcome.OK], "after_started": None}


async def test_engine_thread_calls_get_in_between_batches_under_load(scheduler):
    first = [submit(scheduler, params(), f"f{i}") for i in range(4)]
    await asyncio.sleep(0.05)
    seen: dict[str, object] = {}

    def between() -> None:
        seen["first"] = {j.outcome for j in first}
        seen["later_started"] = [j.started_at for j in later]

    call = asyncio.ensure_future(scheduler.run_in_engine_thread(between))
    await asyncio.sleep(0)
    later = [submit(scheduler, params(), f"l{i}") for i in range(2)]  # places are free, yet they wait for the call
    await call
    for job in (*first, *later):
        assert await collect(scheduler, job)
    assert seen == {"first": {JobOutcome.OK}, "later_started": [None, None]}


async def test_a_drain_that_runs_out_ends_every_job_in_the_batch(scheduler):
    jobs = [submit(scheduler, params("Slow. " * 30), f"j{i}") for i in range(5)]
    await asyncio.sleep(0.1)
    scheduler.begin_drain()
    with pytest.raises(Draining):
        submit(scheduler, params(), "late")
    assert scheduler.abort_all() == 5
    for job in jobs:
        with pytest.raises(Draining):
            await collect(scheduler, job)
    assert await scheduler.wait_idle(5)
    assert {j.outcome for j in jobs} == {JobOutcome.DRAINING}


def test_batching_is_used_only_when_on_and_the_engine_batches():
    metrics = WorkerMetrics("w", "synthetic", "cpu")
    on = WorkerSettings(engine="synthetic", batching=True, max_batch=4)
    assert isinstance(make_scheduler(on, engine(max_batch=4), metrics), BatchScheduler)
    assert make_scheduler(on, engine(max_batch=4), metrics).max_batch == 4
    assert type(make_scheduler(on, engine(max_batch=1), metrics)) is Scheduler  # an engine that cannot batch
    off = WorkerSettings(engine="synthetic", batching=False, max_batch=4)
    assert type(make_scheduler(off, engine(max_batch=4), metrics)) is Scheduler
    assert make_scheduler(off, engine(max_batch=4), metrics).max_batch == 1


def test_batch_settings_are_bounded():
    with pytest.raises(ValidationError, match="max_queue_size"):
        WorkerSettings(engine="synthetic", batching=True, max_batch=8, max_queue_size=4)
    for bad in (dict(max_batch=0), dict(max_batch=65), dict(batch_wait_ms=-1), dict(synthetic_batch_alpha=1.5)):
        with pytest.raises(ValidationError):
            WorkerSettings(engine="synthetic", batching=True, **bad)
