"""Prometheus metrics of the router: request outcomes and latencies, plus per-worker gauges read at scrape time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .pool import WorkerPool

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120)


class _PoolCollector(Collector):
    """Workers come and go: their gauges are rebuilt from the pool at every scrape."""

    def __init__(self, pool: WorkerPool, copies: Optional[Callable[[], Mapping[str, int]]] = None) -> None:
        self.pool = pool
        self.copies = copies

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        now = time.monotonic()
        depth = GaugeMetricFamily("ttsc_router_worker_queue_depth", "Last polled queue depth.", labels=["worker"])
        flight = GaugeMetricFamily("ttsc_router_worker_in_flight", "This router's requests in flight.", labels=["worker"])
        healthy = GaugeMetricFamily("ttsc_router_worker_healthy", "1 when the worker takes requests.", labels=["worker"])
        count = GaugeMetricFamily("ttsc_router_healthy_workers", "Healthy workers (2+: concurrent, 1: single).")
        n = 0
        for w in self.pool.ordered():
            ok = w.healthy(now, self.pool.stale_after)
            n += ok
            depth.add_metric([w.name], float(w.stats.queue_depth if w.stats else 0))
            flight.add_metric([w.name], float(w.in_flight))
            healthy.add_metric([w.name], 1.0 if ok else 0.0)
        count.add_metric([], float(n))
        # Ejections come from failed polls as well as failed requests: the pool counts both.
        ejections = CounterMetricFamily("ttsc_router_ejections", "Workers ejected after consecutive failures.",
                                        labels=["worker"])
        for worker, times in sorted(self.pool.ejections.items()):
            ejections.add_metric([worker], float(times))
        yield from (depth, flight, healthy, count, ejections)
        if self.copies is not None:  # voice-aware routing: the background copies of voices under pressure
            copies = CounterMetricFamily(
                "ttsc_router_voice_copies", "Background copies of a voice under pressure, by result: asked of a "
                "worker, loaded there (counted once its /stats lists the voice), or given up.", labels=["result"])
            for result, n in sorted(self.copies().items()):
                copies.add_metric([result], float(n))
            yield copies


class RouterMetrics:
    def __init__(self, pool: WorkerPool, copies: Optional[Callable[[], Mapping[str, int]]] = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ttsc_router_requests", "Finished /tts requests by status and worker.", ["status", "worker"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ttsc_router_request_seconds", "End-to-end /tts latency at the router.", buckets=_BUCKETS,
            registry=self.registry,
        )
        self.first_byte = Histogram(
            "ttsc_router_time_to_first_byte_seconds", "From request to the first audio byte sent.", buckets=_BUCKETS,
            registry=self.registry,
        )
        self.upstream = Histogram(
            "ttsc_router_upstream_seconds", "From sending to a worker to its response headers.", ["worker"],
            buckets=_BUCKETS, registry=self.registry,
        )
        self.key_requests = Counter(
            "ttsc_router_key_requests", "Finished /tts and /v1 requests by API key id (`none`: no valid key) and "
            "status.", ["key", "status"], registry=self.registry,
        )
        self.retries = Counter("ttsc_router_retries", "Requests re-sent to another worker.", registry=self.registry)
        self.truncated = Counter(
            "ttsc_router_truncated_streams", "Responses cut off after bytes had reached the client.",
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(pool, copies))
