"""The vocoder thread a batched engine hands its non-autoregressive stages to: jobs run one at a time in the order
they were submitted, on their own thread, and are collected in that order with their chunks or their exception."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from tts_worker.engines.gpt_sovits.vocoder import VocoderThread

pytestmark = pytest.mark.unit


@pytest.fixture
def vocoder() -> Iterator[VocoderThread[str]]:
    thread: VocoderThread[str] = VocoderThread()
    yield thread
    thread.close()


def test_jobs_run_in_order_on_another_thread_and_are_collected_in_order(vocoder: VocoderThread[str]) -> None:
    ran: list[tuple[int, str]] = []
    gate = threading.Event()

    def job(n: int) -> list[np.ndarray]:
        if n == 0:
            assert gate.wait(10)
        ran.append((n, threading.current_thread().name))
        return [np.full(3, n, dtype=np.int16)]

    for n in range(3):
        vocoder.submit(n, f"tag{n}", lambda n=n: job(n))
    assert vocoder.collect() == []  # the first blocks, so nothing is finished: nothing is waited for
    assert vocoder.pending == 3
    gate.set()
    done = []
    while len(done) < 3:
        done += vocoder.collect(timeout=5)
    assert [(d.key, d.tag, int(d.chunks[0][0]), d.error) for d in done] == [
        (0, "tag0", 0, None), (1, "tag1", 1, None), (2, "tag2", 2, None)]
    assert [n for n, _ in ran] == [0, 1, 2]
    assert {name for _, name in ran} != {threading.current_thread().name}
    assert all(name.startswith("tts-vocoder") for _, name in ran)
    assert vocoder.pending == 0


def test_a_failing_job_is_collected_with_its_exception_and_the_next_still_runs(vocoder: VocoderThread[str]) -> None:
    def boom() -> list[np.ndarray]:
        raise RuntimeError("vocoder broke")

    vocoder.submit(1, "a", boom)
    vocoder.submit(2, "b", lambda: [np.zeros(2, dtype=np.int16)])
    done = []
    while len(done) < 2:
        done += vocoder.collect(timeout=5)
    assert isinstance(done[0].error, RuntimeError) and done[0].chunks == []
    assert done[1].error is None and len(done[1].chunks) == 1


def test_collect_waits_at_most_its_timeout_for_a_running_job(vocoder: VocoderThread[str]) -> None:
    gate = threading.Event()
    vocoder.submit(1, "a", lambda: [np.zeros(1, dtype=np.int16)] if gate.wait(10) else [])
    assert vocoder.collect(timeout=0.05) == []  # returns while the job still runs
    gate.set()
    assert [d.key for d in vocoder.collect(timeout=10)] == [1]


def test_inline_runs_each_job_at_submit_on_the_callers_thread_and_collects_alike() -> None:
    vocoder: VocoderThread[str] = VocoderThread(inline=True)
    ran: list[str] = []

    def job() -> list[np.ndarray]:
        ran.append(threading.current_thread().name)
        return [np.ones(2, dtype=np.int16)]

    def boom() -> list[np.ndarray]:
        raise ValueError("bad chunk")

    vocoder.submit(1, "a", job)
    assert ran == [threading.current_thread().name]  # already done, before any collect
    vocoder.submit(2, "b", boom)
    done = vocoder.collect()
    assert [(d.key, d.tag, len(d.chunks)) for d in done] == [(1, "a", 1), (2, "b", 0)]
    assert isinstance(done[1].error, ValueError)
    vocoder.close()


def test_close_waits_for_the_running_job_and_drops_the_waiting_ones() -> None:
    vocoder: VocoderThread[str] = VocoderThread()
    started, ran = threading.Event(), []

    def slow() -> list[np.ndarray]:
        started.set()
        threading.Event().wait(0.2)
        ran.append("slow")
        return []

    vocoder.submit(1, "a", slow)
    vocoder.submit(2, "b", lambda: ran.append("queued") or [])  # type: ignore[func-returns-value]
    assert started.wait(5)
    vocoder.close()
    assert ran == ["slow"]  # finished before close returned; the queued one never ran
    assert vocoder.pending == 0
