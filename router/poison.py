"""A short memory of requests that broke workers' connections, so one request cannot take down every worker.

A request whose worker connection breaks after it was sent (the worker died under it, as a codec crash did) is
retried once elsewhere; when the same request (by fingerprint) has broken `condemn_after` different workers within
`ttl` seconds it is refused at once, without trying another. The memory is bounded: oldest entries go first.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional


def fingerprint(canonical: str) -> str:
    """A short, stable name for a request's parameters (GET and POST with the same parameters share it)."""
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class _Entry:
    first_at: float
    workers: list[str] = field(default_factory=list)


class PoisonMemory:
    def __init__(self, ttl: float = 600.0, condemn_after: int = 2, capacity: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.condemn_after = condemn_after
        self.capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _live(self, fp: str) -> Optional[_Entry]:
        entry = self._entries.get(fp)
        if entry is not None and self._clock() - entry.first_at > self.ttl:
            del self._entries[fp]
            return None
        return entry

    def record_break(self, fp: str, worker: str) -> list[str]:
        """Remember that `fp` broke `worker`'s connection; return every worker it broke within the ttl."""
        entry = self._live(fp)
        if entry is None:
            entry = self._entries[fp] = _Entry(self._clock())
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        if worker not in entry.workers:
            entry.workers.append(worker)
        return list(entry.workers)

    def condemned(self, fp: str) -> Optional[list[str]]:
        """The workers `fp` broke, when they are enough to refuse it; else None."""
        entry = self._live(fp)
        if entry is not None and len(entry.workers) >= self.condemn_after:
            return list(entry.workers)
        return None

    def __len__(self) -> int:
        return len(self._entries)
