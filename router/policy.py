"""Choosing a worker for one request: small policies behind one Protocol, registered by name.

Every policy gets only workers that are healthy and have room (the pool filters); `reference` is the peers' measured
seconds per character, for pricing workers that have measured none yet.

- least-work: the worker where this request is expected to finish first (admitted text x measured seconds per
  character, plus this request): TTS requests differ in size by 10x or more and the text is known up front. A
  batching worker with a free place in its batch starts the request at once; a full one is priced by the part of
  its queue that must finish first (`finish.expected_finish`).
- least-loaded: lowest admitted requests relative to capacity, ties broken at random.
- power-of-two: two random candidates, the less loaded of them: robust when several routers act on stale data,
  where a global minimum sends everything to the same worker at once.
- round-robin: in turn (the seed's first algorithm, for comparison).

Only least-work knows voices: while any candidate has the request's voice loaded (`held`), it chooses among those
alone, so no request waits for a load of its voice while a worker holds it (another copy is loaded in the background:
`replicate`); when none holds it, it adds each worker's load time, nothing where the voice is already on its way.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Optional, Protocol

from tts_common.policies import POLICY_NAMES

from .pool import WorkerState


class RoutingPolicy(Protocol):
    def choose(self, candidates: Sequence[WorkerState], chars: int, reference: float,
               voice_load: Optional[Mapping[str, float]] = None,
               held: frozenset[str] = frozenset()) -> WorkerState: ...


def _min_random_ties(candidates: Sequence[WorkerState], key: Callable[[WorkerState], float],
                     rng: random.Random) -> WorkerState:
    best = min(key(w) for w in candidates)
    return rng.choice([w for w in candidates if key(w) <= best + 1e-9])


def _fewest(candidates: Sequence[WorkerState], key: Callable[[WorkerState], float]) -> list[WorkerState]:
    best = min(key(w) for w in candidates)
    return [w for w in candidates if key(w) <= best]


def _load(w: WorkerState) -> float:
    return w.admitted / max(1, w.capacity)


class LeastWork:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, candidates: Sequence[WorkerState], chars: int, reference: float,
               voice_load: Optional[Mapping[str, float]] = None,
               held: frozenset[str] = frozenset()) -> WorkerState:
        # Where the voice is loaded, only there: a worker still loading it, or lacking it, would make this request
        # wait for a load however long the holders' queues are (their pressure is the replicator's to relieve).
        holders = [w for w in candidates if w.url in held]
        if holders:
            return _min_random_ties(holders, lambda w: w.expected_finish(chars, reference), self.rng)
        # Held nowhere: a worker that must load the voice first is priced with that load (nothing where it is on
        # its way: loading, queued or just sent), so one worker loads it and the next requests follow.
        extra = voice_load or {}

        def cost(w: WorkerState) -> float:
            return w.expected_finish(chars, reference) + extra.get(w.url, 0.0)

        if voice_load and all(extra.get(w.url, 0.0) > 0 for w in candidates):
            # Nobody holds the voice (nor is loading it): the worker with the most room, then the fewest voices,
            # loads it, so voices spread over workers instead of evicting each other on one; then least work.
            tied = _fewest(_fewest(candidates, lambda w: -w.room), lambda w: w.loaded_voice_count)
        else:
            tied = list(candidates)
        best = min(cost(w) for w in tied)
        tied = [w for w in tied if cost(w) <= best + 1e-9]
        return self.rng.choice(tied)


class LeastLoaded:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, candidates: Sequence[WorkerState], chars: int, reference: float,
               voice_load: Optional[Mapping[str, float]] = None,
               held: frozenset[str] = frozenset()) -> WorkerState:
        return _min_random_ties(candidates, _load, self.rng)


class PowerOfTwo:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, candidates: Sequence[WorkerState], chars: int, reference: float,
               voice_load: Optional[Mapping[str, float]] = None,
               held: frozenset[str] = frozenset()) -> WorkerState:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self.rng.sample(list(candidates), 2)
        return a if _load(a) <= _load(b) else b


class RoundRobin:
    def __init__(self, rng: random.Random) -> None:
        self._turn = itertools.count()

    def choose(self, candidates: Sequence[WorkerState], chars: int, reference: float,
               voice_load: Optional[Mapping[str, float]] = None,
               held: frozenset[str] = frozenset()) -> WorkerState:
        return candidates[next(self._turn) % len(candidates)]


POLICIES: dict[str, Callable[[random.Random], RoutingPolicy]] = {
    "least-work": LeastWork,
    "least-loaded": LeastLoaded,
    "power-of-two": PowerOfTwo,
    "round-robin": RoundRobin,
}
assert tuple(POLICIES) == POLICY_NAMES, "every policy name in tts_common.policies needs a class here"


def make_policy(name: str, seed: Optional[int] = None) -> RoutingPolicy:
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}: one of {', '.join(POLICY_NAMES)}") from None
    return factory(random.Random(seed))
