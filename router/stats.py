"""`/concurrent_stats`: the seed's shape, cluster-wide, plus a `workers` list that old clients ignore."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import BaseModel, Field, StringConstraints

from tts_common.modes import ClusterMode, mode_for

from .default_voice import DefaultVoice
from .pool import WorkerPool

# The published schema of /concurrent_stats, generated from the models below (`python -m tts_router.stats`).
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "concurrent_stats.schema.json"


class GPUStat(BaseModel):
    requests_processed: int = Field(ge=0)
    average_processing_time: float = Field(ge=0, description="Seconds.")


class QueueStat(BaseModel):
    request_queue: int = Field(ge=0, description="Requests waiting in the worker's queue.")
    response_queue: int = Field(ge=0, description="Requests the worker's engine is producing now.")


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
    voices: list[str] = Field(default_factory=list, description="Catalog voices the worker holds now.")


class DefaultVoiceStat(BaseModel):
    gpt_weights: Optional[str] = Field(description="GPT weights every worker is brought to; null: each worker's yaml's.")
    sovits_weights: Optional[str] = Field(description="Likewise for SoVITS.")
    switched: bool = Field(description="Switched through this router process (not only given at its start).")
    workers_behind: int = Field(ge=0, description="Workers not serving this choice yet (no default-voice requests).")


class ConcurrentStats(BaseModel):
    """GET /concurrent_stats: the seed's shape, cluster-wide, plus `workers`."""

    mode: ClusterMode = Field(
        description="concurrent: 2+ healthy workers; single: the fallback with one; unavailable: none."
    )
    gpu_count: int = Field(ge=0, description="Healthy workers serving now.")
    total_requests: int = Field(ge=0)
    completed_requests: int = Field(ge=0)
    failed_requests: int = Field(ge=0)
    success_rate: float = Field(ge=0, le=100, description="Percent, e.g. 98.0.")
    gpu_stats: dict[Annotated[str, StringConstraints(pattern=r"^[0-9]+$")], GPUStat] = Field(
        description='Per worker by index ("0".."N-1").', json_schema_extra={"additionalProperties": False}
    )
    queue_status: dict[Annotated[str, StringConstraints(pattern=r"^gpu_[0-9]+$")], QueueStat] = Field(
        description='Per worker ("gpu_0".."gpu_N-1").', json_schema_extra={"additionalProperties": False}
    )
    workers: list[WorkerEntry]
    default_voice: Optional[DefaultVoiceStat] = Field(
        None, description="The cluster's default voice as this router keeps it; null until one is chosen.")


def json_schema() -> dict[str, Any]:
    """The JSON Schema published at SCHEMA_PATH."""
    schema = ConcurrentStats.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


@dataclass
class RequestCounters:
    """This router's /tts outcomes. Client errors (4xx) are the client's, so they count in neither column."""

    completed: int = 0
    failed: int = 0

    def record(self, status: int) -> None:
        """One request answered with `status`: 2xx completed, 5xx failed; a 4xx or a client that left (499) is the
        client's doing and counts in neither."""
        if 200 <= status < 300:
            self.completed += 1
        elif status >= 500:
            self.failed += 1

    @property
    def total(self) -> int:
        return self.completed + self.failed


def concurrent_stats(pool: WorkerPool, counters: RequestCounters,
                     default_voice: Optional[DefaultVoice] = None) -> ConcurrentStats:
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
                voices=list(s.loaded_voices) if s else [],
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
        default_voice=_default_voice(default_voice),
    )


def _default_voice(voice: Optional[DefaultVoice]) -> Optional[DefaultVoiceStat]:
    if voice is None or voice.generation == 0:
        return None
    return DefaultVoiceStat(gpt_weights=voice.chosen.get("gpt"), sovits_weights=voice.chosen.get("sovits"),
                            switched=voice.switched, workers_behind=voice.behind())


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render_schema(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
