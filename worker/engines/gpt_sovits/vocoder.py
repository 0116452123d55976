"""A second engine thread for the non-autoregressive stages, so they overlap the batch's decoding loop.

A batched engine's decoding loop advances every row by one token per step; vocoding a finished sentence (or a
streaming chunk) inline would pause every other row for as long as it takes. Instead the engine thread hands the
vocoding to this thread and goes on stepping the other rows; each step collects what has finished. Jobs run one at
a time in the order they were submitted, so one request's chunks come out in order, and whatever a job touches of
its request is touched by no other thread until it is collected.

`inline` runs each job at once on the submitting thread instead, collected the same way: where both stages share
the same cores (a CPU), a second thread only makes them take turns at a cost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")

Chunks = list[np.ndarray]


@dataclass(frozen=True)
class Finished(Generic[T]):
    """A collected job: its tag (what the engine thread does next), and its chunks or the exception it raised."""

    key: int
    tag: T
    chunks: Chunks
    error: BaseException | None = None


class VocoderThread(Generic[T]):
    def __init__(self, name: str = "tts-vocoder", inline: bool = False) -> None:
        self._pool = None if inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._jobs: deque[tuple[int, T, Future[Chunks]]] = deque()

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet collected (running, waiting or finished)."""
        return len(self._jobs)

    def submit(self, key: int, tag: T, job: Callable[[], Chunks]) -> None:
        if self._pool is not None:
            self._jobs.append((key, tag, self._pool.submit(job)))
            return
        future: Future[Chunks] = Future()
        try:
            future.set_result(job())
        except Exception as exc:  # noqa: BLE001 - collected as the thread's would be
            future.set_exception(exc)
        self._jobs.append((key, tag, future))

    def collect(self, timeout: float = 0.0) -> list[Finished[T]]:
        """The jobs finished so far, in submission order. With none finished, waits up to `timeout` seconds for
        the oldest (the one running: jobs run in order)."""
        if self._jobs and timeout > 0 and not self._jobs[0][2].done():
            wait([self._jobs[0][2]], timeout=timeout, return_when=FIRST_COMPLETED)
        done: list[Finished[T]] = []
        while self._jobs and self._jobs[0][2].done():
            key, tag, future = self._jobs.popleft()
            error = future.exception()
            done.append(Finished(key, tag, [] if error is not None else future.result(), error))
        return done

    def close(self) -> None:
        """Drop the waiting jobs and wait for the running one, so no job of this thread outlives it (the next
        session's thread would otherwise swap random states beside it)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._jobs.clear()
