"""Worker count from the router's cluster-wide queue depth, with stabilization windows so it does not flap.

Like the HorizontalPodAutoscaler: each reconciliation records a recommendation (admitted requests / target per
worker, rounded up); scaling up takes the lowest recommendation of the scale-up window, scaling down the highest of
the scale-down window, so a short burst or a short lull changes nothing.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Optional

import httpx

from .spec import TTSClusterSpec


class Autoscaler:
    def __init__(self) -> None:
        self.history: deque[tuple[float, int]] = deque()

    def recommend(self, admitted: int, spec: TTSClusterSpec) -> int:
        target = spec.autoscaling.target_queue_depth
        return max(spec.workers.min_replicas, min(spec.workers.max_replicas, math.ceil(admitted / target)))

    def decide(self, current: int, recommendation: int, spec: TTSClusterSpec, at: Optional[float] = None) -> int:
        at = time.monotonic() if at is None else at
        a = spec.autoscaling
        self.history.append((at, recommendation))
        horizon = max(a.scale_up_stabilization_seconds, a.scale_down_stabilization_seconds)
        while self.history and at - self.history[0][0] > horizon:
            self.history.popleft()
        up = [r for t, r in self.history if at - t <= a.scale_up_stabilization_seconds]
        down = [r for t, r in self.history if at - t <= a.scale_down_stabilization_seconds]
        if min(up) > current:
            return min(up)
        if max(down) < current:
            return max(down)
        return current


def cluster_admitted(router_url: str) -> Optional[int]:
    """Requests admitted across the cluster, from the router's /concurrent_stats; None if it cannot be read."""
    try:
        body = httpx.get(f"{router_url}/concurrent_stats", timeout=2.0).json()
        return sum(int(q["request_queue"]) + int(q["response_queue"]) for q in body["queue_status"].values())
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
