"""The one object that owns a worker's state: settings, engine, scheduler, metrics, lifecycle."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Optional

from tts_common.key_guard import LabelBudget
from tts_common.logs import log_fields
from tts_common.schemas import WorkerStats
from tts_common.voices import CatalogFile, VoiceCatalog

from .batch_scheduler import BatchScheduler
from .engines.base import CancelToken, Engine, EngineError
from .metrics import WorkerMetrics
from .scheduler import Scheduler
from .settings import WorkerSettings
from .voices import missing_files

log = logging.getLogger("tts_worker.service")

# A pinned voice whose load failed (a weight file not there yet) is tried again this often.
PIN_RETRY_SECONDS = 30.0


class WorkerService:
    def __init__(self, settings: WorkerSettings, engine: Engine, catalog: Optional[CatalogFile] = None) -> None:
        self.settings = settings
        self.engine = engine
        self._catalog = catalog
        self._catalog_checked = 0.0
        self._applied: Optional[VoiceCatalog] = None  # the catalog whose pins and changes the engine has applied
        self._watcher: Optional[asyncio.Task[None]] = None
        self.metrics = WorkerMetrics(settings.name, engine.name, engine.device)
        self.scheduler = make_scheduler(settings, engine, self.metrics)
        self.started_at = time.monotonic()
        self.instance_id = uuid.uuid4().hex
        # Key ids label the per-key counters; those the router sends are bounded here.
        self.key_label = LabelBudget()
        # Set by the server: asks it to drain and exit (or re-exec, for /control?command=restart).
        self.request_shutdown: Optional[Callable[[bool], None]] = None
        self.metrics.bind(
            queue_depth=lambda: self.scheduler.queue_depth,
            in_flight=lambda: self.scheduler.in_flight,
            capacity=lambda: self.settings.max_queue_size,
            ready=lambda: 1.0 if self.ready else 0.0,
            loaded_voices=lambda: len(engine.loaded.names()),
            voices_loading=lambda: len(engine.loaded.loading()),
            max_loaded_voices=lambda: engine.loaded.limit,
            max_batch=lambda: self.scheduler.max_batch,
            reference_clips=lambda: {"found": engine.clips.found, "missed": engine.clips.missed},
        )

    async def start(self) -> None:
        self.scheduler.start()
        if self._catalog is not None and self.engine.serves_voices:
            self._watcher = asyncio.create_task(self._watch_catalog(), name="voice-catalog")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await self.scheduler.close()

    async def _watch_catalog(self) -> None:
        """Apply each catalog that takes effect: forget held voices it removed or changed, pin and load the voices
        its placement gives this worker. On the engine thread, between syntheses. A pin that failed to load is
        tried again every PIN_RETRY_SECONDS (its error stays in voice_errors meanwhile)."""
        retry_at = 0.0
        while True:
            catalog = self.catalog()
            now = time.monotonic()
            if catalog is not None and (catalog is not self._applied or (retry_at and now >= retry_at)):
                pinned = False
                try:
                    pinned = await self.scheduler.run_in_engine_thread(functools.partial(self._apply, catalog))
                except Exception:  # noqa: BLE001 - keep watching: the next change or retry may succeed
                    log.exception("applying the voice catalog failed")
                self._applied = catalog
                retry_at = 0.0 if pinned else now + PIN_RETRY_SECONDS
            await asyncio.sleep(1.0)

    def _apply(self, catalog: VoiceCatalog) -> bool:
        """Whether every voice pinned here is loaded."""
        loaded, engine = self.engine.loaded, self.engine
        previous = self._applied
        stale = [n for n in loaded.names()
                 if catalog.get(n) is None or (previous is not None and previous.get(n) != catalog.get(n))]
        if stale:
            dropped = loaded.drop(stale, engine.release_voice)
            log_fields(log, "voices dropped: removed or changed in the catalog", voices=dropped)
        loaded.forget(catalog.names())
        assert self.settings.models_dir is not None  # set at start-up
        for voice in catalog.for_engine(engine.name):
            problems = missing_files(voice, engine.name, self.settings.models_dir, self.settings.voice_dir)
            if problems:  # named now, not at the first request; the voice answers 503 with the same until fixed
                log_fields(log, "voice catalog: a voice names files that are not there", logging.WARNING,
                           voice=voice.name, problems=problems)
                loaded.note_error(voice.name, "; ".join(problems))
        pins = [n for n in catalog.pinned_for(self.settings.name)
                if (v := catalog.get(n)) is not None and v.supports(engine.name)]
        loaded.pin(pins)
        pins = loaded.pinned()  # at most max_loaded_voices - 1
        complete = True
        for name in pins:
            pinned = catalog.get(name)
            assert pinned is not None
            try:
                engine.prepare_voice(pinned, CancelToken())
            except EngineError as exc:
                complete = False
                log_fields(log, "pinned voice failed to load", logging.WARNING, voice=name, error=str(exc))
        if pins:
            log_fields(log, "voices pinned", voices=pins)
        return complete

    def catalog(self) -> Optional[VoiceCatalog]:
        """The voice catalog in force, re-read at most once a second when its file changed (a bad change is
        logged and the last good catalog stays)."""
        if self._catalog is None:
            return None
        now = time.monotonic()
        if now - self._catalog_checked >= 1.0:
            self._catalog_checked = now
            before = self._catalog.error
            if self._catalog.refresh():
                log_fields(log, "voice catalog reloaded", voices=self._catalog.catalog.names())
            elif self._catalog.error and self._catalog.error != before:
                log_fields(log, "voice catalog change refused: the previous one stays", logging.WARNING,
                           error=self._catalog.error)
        return self._catalog.catalog

    @property
    def draining(self) -> bool:
        return self.scheduler.draining

    @property
    def ready(self) -> bool:
        return not self.draining

    def begin_drain(self) -> None:
        self.scheduler.begin_drain()

    async def drain(self, timeout: float) -> bool:
        """Refuse new work, then wait for admitted work to finish; False if `timeout` passed first."""
        self.begin_drain()
        return await self.scheduler.wait_idle(timeout)

    def stats(self) -> WorkerStats:
        s, c = self.scheduler, self.scheduler.counters
        return WorkerStats(
            worker_id=self.settings.name,
            engine=self.engine.name,
            engine_version=self.engine.version,
            device=self.engine.device,
            sample_rate=self.engine.sample_rate,
            languages=list(self.engine.languages),
            prompt_languages=list(self.engine.prompt_languages),
            max_text_length=self.settings.max_text_length,
            ready=self.ready,
            draining=self.draining,
            queue_depth=s.queue_depth,
            in_flight=s.in_flight,
            capacity=self.settings.max_queue_size,
            queued_work_seconds=round(s.queued_work_seconds(), 4),
            seconds_per_char=s.seconds_per_char,
            chars_per_second=round(s.chars_per_second, 3),
            max_batch=s.max_batch,
            batch_occupancy=s.in_flight,
            decoded_tokens=self.engine.decoded.tokens,
            decoding_seconds=round(self.engine.decoded.seconds, 4),
            queued_chars=s.queued_chars(),
            retry_after_seconds=s.retry_after(),
            processed=c.processed,
            failed=c.failed,
            rejected=c.rejected,
            cancelled=c.cancelled,
            average_processing_time=round(s.average_processing_time, 4),
            average_queue_wait=round(c.queue_wait_total / c.started, 4) if c.started else 0.0,
            audio_seconds=round(c.audio_seconds, 3),
            uptime_seconds=round(time.monotonic() - self.started_at, 3),
            pid=os.getpid(),
            instance_id=self.instance_id,
            gpt_weights=self.engine.default_weights()[0],
            sovits_weights=self.engine.default_weights()[1],
            gpu_memory_allocated_bytes=self.engine.memory_allocated(),
            voices=self._servable_voices(),
            loaded_voices=self.engine.loaded.names(),
            max_loaded_voices=self.engine.loaded.limit,
            voice_load_seconds=self.engine.loaded.load_seconds(),
            voices_loading=self.engine.loaded.loading(),
            voices_queued=s.voices_queued(),
            pinned_voices=self.engine.loaded.pinned(),
            voice_loads=self.engine.loaded.loads,
            voice_load_waits=c.voice_load_waits,
            voice_own_load_waits=c.voice_own_load_waits,
            voice_load_waits_held_elsewhere=c.voice_load_waits_held_elsewhere,
            voices_replicating=s.voices_replicating(),
            voice_background_loads=c.background_loads,
            voice_errors=self.engine.loaded.errors(),
        )

    def _servable_voices(self) -> list[str]:
        catalog = self.catalog()
        if catalog is None or not self.engine.serves_voices:
            return []
        return [v.name for v in catalog.for_engine(self.engine.name)]


def make_scheduler(settings: WorkerSettings, engine: Engine, metrics: WorkerMetrics) -> Scheduler:
    """The batched scheduler where batching is on and the engine batches; else today's one-at-a-time one."""
    if settings.batching and engine.max_batch > 1 and settings.max_batch > 1:
        return BatchScheduler(engine, settings.max_queue_size, metrics, settings.max_batch,
                              settings.batch_wait_ms / 1000)
    if settings.batching and engine.max_batch <= 1:
        log_fields(log, "batching is on but the engine serves one request at a time", logging.WARNING,
                   engine=engine.name, max_batch=settings.max_batch)
    return Scheduler(engine, settings.max_queue_size, metrics)


def service_of(app_state: object) -> WorkerService:
    svc = getattr(app_state, "service", None)
    if not isinstance(svc, WorkerService):
        raise RuntimeError("worker service is not initialised")
    return svc


