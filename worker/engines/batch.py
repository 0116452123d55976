"""The batched engine interface: requests that advance together, one step at a time, on the engine's one thread.

A batching engine (`Engine.max_batch` > 1) hands the scheduler a `BatchSession`. Requests join (`add`) and leave
(`remove`, or by finishing) only between steps, so an engine that keeps one row of its KV cache per request (see
`gpt_sovits.t2s.BatchDecoder`: `admit`, `step`, `cancel`) maps onto it directly, and a request that ends frees its row
for the next one at once instead of at the end of a fixed batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .params import CancelToken, SynthesisParams


@dataclass
class StepOutput:
    """What one request got from one step: audio chunks at the granularity its streaming mode asks for, and
    whether it ended (done, or failed with `error`, which ends that request alone). Either way it has left."""

    key: int
    chunks: list[np.ndarray] = field(default_factory=list)
    done: bool = False
    error: Optional[Exception] = None


class BatchSession(ABC):
    """The requests an engine is serving at once. Every method runs on the engine thread."""

    @property
    @abstractmethod
    def active(self) -> int:
        """Requests in the batch now."""

    @abstractmethod
    def add(self, key: int, params: SynthesisParams, cancel: CancelToken) -> None:
        """Start a request (its voice already held). Raises EngineError (or Cancelled) for this request alone,
        which then never joined."""

    @abstractmethod
    def remove(self, key: int) -> None:
        """Drop a request that left early (its client left, its deadline passed, its audio grew too long); an
        unknown key is ignored."""

    @abstractmethod
    def close(self) -> None:
        """The session is dropped (the engine thread failed): release what it holds beside the batch. Called on
        the engine thread."""

    @abstractmethod
    def step(self) -> list[StepOutput]:
        """Advance every request in the batch by one step: one output per request that took part, so the scheduler
        can share the step's time among them."""


def run_together(session: BatchSession, requests: Sequence[SynthesisParams], max_batch: int) -> None:
    """Serve `requests` in `session` from start to end, up to `max_batch` at once, the next joining as one ends
    (a warm-up of the batched path, on the engine thread before any scheduler runs); their audio is dropped, the
    first request error is raised, and the session is closed."""
    waiting = list(enumerate(requests))
    waiting.reverse()
    try:
        while waiting or session.active:
            while waiting and session.active < max_batch:
                key, params = waiting.pop()
                session.add(key, params, CancelToken())
            for out in session.step():
                if out.error is not None:
                    raise out.error
    finally:
        session.close()
