"""`/concurrent_stats`: the seed's shape, cluster-wide, plus a `workers` list that old clients ignore."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Optional

from pydantic import BaseModel, Field

from .pool import WorkerPool


class GPUStat(BaseModel):
    requests_processed: int
    average_processing_time: float


class QueueStat(BaseModel):
    request_queue: int = Field(description="Requests waiting in the worker's queue.")
    response_queue: int = Field(description="Requests the worker's engine is producing now.")


class WorkerEntry(BaseModel):
    index: int
    url: str
    name: str
    device: Optional[str]
    engine: Optional[str]
    healthy: bool
    draining: bool
    ejected: bool
    routed: int = Field(description="Requests this router sent to the worker.")


class ConcurrentStats(BaseModel):
    mode: Literal["concurrent", "single", "unavailable"]
    gpu_count: int
    total_requests: int
    completed_requests: int
    failed_requests: int
    success_rate: float
    gpu_stats: dict[str, GPUStat]
    queue_status: dict[str, QueueStat]
    workers: list[WorkerEntry]


@dataclass
class RequestCounters:
    """This router's /tts outcomes. Client errors (4xx) are the client's, so they count in neither column."""

    completed: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.completed + self.failed


def mode_for(healthy: int) -> Literal["concurrent", "single", "unavailable"]:
    return "concurrent" if healthy >= 2 else "single" if healthy == 1 else "unavailable"


def concurrent_stats(pool: WorkerPool, counters: RequestCounters) -> ConcurrentStats:
    now = time.monotonic()
    workers = pool.ordered()
    healthy = [w for w in workers if w.healthy(now, pool.stale_after)]
    gpu_stats, queue_status, entries = {}, {}, []
    for i, w in enumerate(workers):
        s = w.stats
        gpu_stats[str(i)] = GPUStat(
            requests_processed=s.processed if s else 0,
            average_processing_time=s.average_processing_time if s else 0.0,
        )
        queue_status[f"gpu_{i}"] = QueueStat(request_queue=s.queue_depth if s else 0, response_queue=s.in_flight if s else 0)
        entries.append(
            WorkerEntry(
                index=i, url=w.url, name=w.name, device=s.device if s else None, engine=s.engine if s else None,
                healthy=w in healthy, draining=w.draining, ejected=w.ejected, routed=w.routed,
            )
        )
    total = counters.total
    return ConcurrentStats(
        mode=mode_for(len(healthy)),
        gpu_count=len(healthy),
        total_requests=total,
        completed_requests=counters.completed,
        failed_requests=counters.failed,
        success_rate=round(100.0 * counters.completed / total, 2) if total else 100.0,
        gpu_stats=gpu_stats,
        queue_status=queue_status,
        workers=entries,
    )
