"""Choosing a worker for one request. Every policy skips workers that are full, ejected, draining or stale.

- least-work: the worker where this request is expected to finish first (admitted text x measured seconds per
  character, plus this request): TTS requests differ in size by 10x or more and the text is known up front.
- least-loaded: lowest admitted requests relative to capacity, ties broken at random.
- power-of-two: two random candidates, the less loaded of them: robust when several routers act on stale data,
  where a global minimum sends everything to the same worker at once.
- round-robin: in turn (the seed's first algorithm, for comparison).
"""

from __future__ import annotations

import itertools
import random
from typing import Callable, Optional, Sequence

from .pool import WorkerState

def _min_random_ties(candidates: Sequence[WorkerState], key: Callable[[WorkerState], float], rng: random.Random) -> WorkerState:
    best = min(key(w) for w in candidates)
    return rng.choice([w for w in candidates if key(w) <= best + 1e-9])


def _load(w: WorkerState) -> float:
    return w.admitted / max(1, w.capacity)


class Policy:
    def __init__(self, name: str, seed: Optional[int] = None) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self._turn = itertools.count()

    def choose(self, candidates: Sequence[WorkerState], chars: int, reference: float) -> WorkerState:
        """`reference`: the peers' seconds per character, for workers that have measured none yet."""
        if not candidates:
            raise ValueError("no candidates")
        if self.name == "round-robin":
            return candidates[next(self._turn) % len(candidates)]
        if self.name == "least-loaded":
            return _min_random_ties(candidates, _load, self.rng)
        if self.name == "power-of-two":
            if len(candidates) == 1:
                return candidates[0]
            a, b = self.rng.sample(list(candidates), 2)
            return a if _load(a) <= _load(b) else b
        if self.name == "least-work":
            return _min_random_ties(candidates, lambda w: w.expected_finish(chars, reference), self.rng)
        raise ValueError(f"unknown policy {self.name!r}")
