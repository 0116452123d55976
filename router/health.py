"""Outlier detection in the manner of Envoy's: which workers to eject, decided by pure functions over outcomes.

Two detectors, both per worker and both on requests (polls have their own rule in the pool):
- **consecutive gateway failures**: `consecutive_failures` connect errors, broken connections, 5xx answers or cut
  streams in a row;
- **error rate far above the peers'**: over the last `window` requests a worker answered, its share of errors
  (4xx and 5xx answers, broken connections) is at least `min_error_rate` and `rate_margin` above its peers' pooled
  share. The router validates every request before sending it, so a worker that refuses what its peers serve
  (misconfigured, a broken model) stands out, while a client's bad request fails everywhere and ejects nobody.

A worker whose last `doubt_after` answers were errors while its peers mostly succeed is *doubtful*: its next
refusal (a 4xx the router would otherwise pass on) is retried on a peer. A worker with that error share whose peers
have answered too little to compare with is a *suspect*: requests go to
its peers while they gather the evidence either way.

Ejection is capped at `max_ejected_share` of the known workers, so a cluster-wide failure never empties the pool,
and lasts `base_ejection_seconds x 2^(times ejected before)`, capped at `max_ejection_seconds`. After it the
worker gets one probe request at a time: a success re-admits it, a failure ejects it again for longer.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class OutlierRules:
    consecutive_failures: int = 3
    window: int = 20
    min_volume: int = 10
    peer_min_volume: int = 5
    min_error_rate: float = 0.5
    doubt_after: int = 3
    rate_margin: float = 0.4
    max_ejected_share: float = 0.5
    base_ejection_seconds: float = 5.0
    max_ejection_seconds: float = 120.0


@dataclass
class Outcomes:
    """One worker's recent request outcomes (True: an error) and its current run of gateway failures."""

    window: int = 20
    recent: deque[bool] = field(default_factory=deque)
    consecutive_failures: int = 0
    consecutive_errors: int = 0

    def add(self, error: bool, gateway_failure: bool) -> None:
        self.recent.append(error)
        while len(self.recent) > self.window:
            self.recent.popleft()
        self.consecutive_failures = self.consecutive_failures + 1 if gateway_failure else 0
        self.consecutive_errors = self.consecutive_errors + 1 if error else 0

    @property
    def errors(self) -> int:
        return sum(self.recent)

    def clear(self) -> None:
        self.recent.clear()
        self.consecutive_failures = 0
        self.consecutive_errors = 0


def ejection_reason(me: Outcomes, peers: Sequence[Outcomes], rules: OutlierRules) -> Optional[str]:
    """Why this worker should be ejected now, or None."""
    if me.consecutive_failures >= rules.consecutive_failures:
        return f"{me.consecutive_failures} consecutive gateway failures"
    if len(me.recent) < rules.min_volume:
        return None
    rate = me.errors / len(me.recent)
    peer_total = sum(len(p.recent) for p in peers)
    if rate < rules.min_error_rate or peer_total < rules.peer_min_volume:
        return None
    peer_rate = sum(p.errors for p in peers) / peer_total
    if rate - peer_rate >= rules.rate_margin:
        return f"error rate {rate:.0%} over its last {len(me.recent)} requests against its peers' {peer_rate:.0%}"
    return None


def suspect(me: Outcomes, peers: Sequence[Outcomes], rules: OutlierRules) -> bool:
    """Errors enough to eject, but too few peer answers to compare with: the typical broken worker that looks the
    fastest and so drew all traffic. Routing prefers its peers until they have answered enough to judge."""
    if len(me.recent) < rules.min_volume or me.errors / len(me.recent) < rules.min_error_rate:
        return False
    return sum(len(p.recent) for p in peers) < rules.peer_min_volume


def doubtful(me: Outcomes, peers: Sequence[Outcomes], rules: OutlierRules) -> bool:
    """Its last `doubt_after` answers were all errors while its peers mostly succeed (or have no record): its next
    refusal is retried on a peer rather than passed on, long before there is volume enough to eject it."""
    if me.consecutive_errors < rules.doubt_after:
        return False
    total = sum(len(p.recent) for p in peers)
    return total == 0 or sum(p.errors for p in peers) / total < rules.min_error_rate


def may_eject(ejected_now: int, known: int, rules: OutlierRules) -> bool:
    """Whether one more worker may be ejected under the cap (never the last one standing)."""
    allowed = math.floor(known * rules.max_ejected_share)
    return ejected_now + 1 <= allowed


def ejection_seconds(times_before: int, rules: OutlierRules) -> float:
    return min(rules.max_ejection_seconds, rules.base_ejection_seconds * float(2 ** min(times_before, 16)))
