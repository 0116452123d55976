"""Per-key limits of one process: a token bucket for requests per second and a count of requests in flight.

Each router replica enforces its own (state is not shared): with N replicas behind a Service, a key may get up to N
times its limits in all. The owner is the key guard; nothing else changes these counts."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .api_keys import ApiKey


@dataclass(frozen=True)
class OverQuota:
    """Why a key's request was refused, and how many seconds to wait (the answer's Retry-After)."""

    message: str
    retry_after: int


@dataclass
class _Bucket:
    tokens: float
    at: float
    in_flight: int = 0


class KeyQuota:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: ApiKey) -> OverQuota | None:
        """Take one request for `key`, or say why not; each success must be matched by one `release`."""
        limits, now = key.limits, self._clock()
        size = limits.bucket_size
        bucket = self._buckets.get(key.id)
        if bucket is None:
            bucket = self._buckets[key.id] = _Bucket(tokens=size, at=now)
        if limits.max_concurrent is not None and bucket.in_flight >= limits.max_concurrent:
            return OverQuota(f"API key {key.id}: {bucket.in_flight} requests already in flight, its max_concurrent",
                             retry_after=1)
        rate = limits.requests_per_second
        if rate is not None:
            bucket.tokens = min(size, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens < 1.0:
                wait = (1.0 - bucket.tokens) / rate
                return OverQuota(f"API key {key.id}: over its limit of {rate:g} requests/s",
                                 retry_after=max(1, math.ceil(wait)))
            bucket.tokens -= 1.0
        bucket.in_flight += 1
        return None

    def release(self, key: ApiKey) -> None:
        bucket = self._buckets.get(key.id)
        if bucket is not None and bucket.in_flight > 0:
            bucket.in_flight -= 1

    def in_flight(self, key_id: str) -> int:
        bucket = self._buckets.get(key_id)
        return bucket.in_flight if bucket is not None else 0

    def forget_except(self, ids: set[str]) -> None:
        """Drop the state of keys no longer configured (the file changed), keeping those in flight until done."""
        for key_id in [k for k, b in self._buckets.items() if k not in ids and b.in_flight == 0]:
            del self._buckets[key_id]
