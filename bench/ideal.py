"""The ideal a size-blind balancer can reach: one central FIFO queue in front of N servers.

Fed the same arrival times and the same service times that were measured, each job starts on the first server to
free up, in arrival order. No balancer that only sees queue lengths beats this on tail latency; one that sees job
sizes (least-work) may still beat it on mean latency by not parking short jobs behind long ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional


def central_queue_latencies(arrivals: Sequence[float], service: Sequence[float], servers: int,
                            speed: Optional[Sequence[float]] = None) -> list[float]:
    """Latency (wait + service) of each job, in arrival order. `speed[k]` scales server k's service times (2.0:
    twice as slow); an arriving job takes the fastest idle server, else waits for the first to free up."""
    factors = list(speed) if speed else [1.0] * servers
    if len(factors) != servers or servers < 1:
        raise ValueError("need at least one server and one speed factor per server")
    free_at = [0.0] * servers
    out = []
    for a, s in sorted(zip(arrivals, service, strict=True)):
        idle = [k for k in range(servers) if free_at[k] <= a]
        if idle:
            k = min(idle, key=lambda k: factors[k])
            start = a
        else:
            k = min(range(servers), key=lambda k: free_at[k])
            start = free_at[k]
        free_at[k] = start + s * factors[k]
        out.append(free_at[k] - a)
    return out


def ideal_throughput(single_worker_throughput: float, workers: int) -> float:
    """N independent workers with a perfect balancer: N times one worker's peak."""
    return single_worker_throughput * workers
