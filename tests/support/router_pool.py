"""Router pools built in-process from made-up worker stats, for the pool's and the policies' unit tests."""

from __future__ import annotations

import time

from tts_common.schemas import LANGUAGES_V2, WorkerStats
from tts_router.health import OutlierRules
from tts_router.pool import WorkerPool, WorkerState


def stats(name: str, **kw: object) -> WorkerStats:
    base: dict[str, object] = dict(
        worker_id=name, engine="synthetic", engine_version="synthetic", device="cpu", sample_rate=32000,
        languages=list(LANGUAGES_V2), prompt_languages=list(LANGUAGES_V2), max_text_length=1000, ready=True,
        draining=False, queue_depth=0, in_flight=0, capacity=10, queued_work_seconds=0.0, seconds_per_char=0.01,
        processed=0, failed=0, rejected=0, cancelled=0, average_processing_time=1.0, average_queue_wait=0.0,
        audio_seconds=0.0, uptime_seconds=1.0, pid=1,
    )
    base.update(kw)
    return WorkerStats.model_validate(base)


def pool_of(*workers: WorkerState, **rules: object) -> WorkerPool:
    pool = WorkerPool(client=None, poll_interval=1.0, stale_after=60.0, eject_after=3,  # type: ignore[arg-type]
                      rules=OutlierRules(**rules))  # type: ignore[arg-type]
    for w in workers:
        w.polled_at = time.monotonic()
        pool.workers[w.url] = w
    return pool


def worker(url: str, name: str = "same-name", **kw: object) -> WorkerState:
    return WorkerState(url=url, stats=stats(name, **kw))
