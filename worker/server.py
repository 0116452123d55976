"""Run one worker: load and warm the engine, serve with uvicorn, drain on SIGTERM, exit 0.

On the first SIGTERM/SIGINT (or `/control?command=exit|restart`) `/readyz` turns 503 at once and new `/tts`
requests get 503 + Retry-After, while admitted requests finish within `drain_timeout`; then uvicorn closes. A second
signal forces the exit. uvicorn re-raises the signals it captured after shutdown (which would make the exit code
-15); this server handles them itself so a clean drain exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Optional

import uvicorn

from tts_common.api_keys import KeysError, load_keys
from tts_common.auth import OPEN_WARNING
from tts_common.logs import configure_logging, log_fields, refused_start
from tts_common.serving import GuardedConfig, Server, check_fd_budget
from tts_common.voices import CatalogError, CatalogFile

from .app import create_app
from .engines import create_engine
from .engines.base import Engine, EngineError, EngineLoadError
from .service import WorkerService
from .settings import WorkerSettings

log = logging.getLogger("tts_worker.server")


class DrainingServer(Server):
    def __init__(self, config: uvicorn.Config, service: WorkerService) -> None:
        super().__init__(config)
        self.service = service
        self.restart = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._drain_task: Optional[asyncio.Task[None]] = None
        service.request_shutdown = self.request_shutdown

    async def serve(self, sockets: Optional[list[socket.socket]] = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        if self._drain_task is not None or self._loop is None:
            self.should_exit = True
            self.force_exit = self._drain_task is not None
            return
        log_fields(log, "signal received: draining", signal=signal.Signals(sig).name)
        self._loop.call_soon_threadsafe(self.request_shutdown, False)

    def request_shutdown(self, restart: bool) -> None:
        if self._drain_task is not None:
            return
        self.restart = restart
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        timeout = self.service.settings.drain_timeout
        t0 = time.monotonic()
        finished = await self.service.drain(timeout)
        scheduler = self.service.scheduler
        log_fields(
            log,
            "drained" if finished else "drain timeout: answering what is left with 503, cutting open streams",
            logging.INFO if finished else logging.WARNING,
            seconds=round(time.monotonic() - t0, 3),
            queue_depth=scheduler.queue_depth,
            in_flight=scheduler.in_flight,
        )
        if not finished:
            # Every admitted request gets an answer of ours (503 + Retry-After before its first byte, which the
            # router retries elsewhere) rather than uvicorn's plain-text 500 when it cancels the tasks at exit.
            scheduler.abort_all()
            await asyncio.sleep(0)  # let the routes take their jobs' last item
        self.should_exit = True


def load_engine(settings: WorkerSettings) -> Engine:
    t0 = time.monotonic()
    engine = create_engine(settings)
    engine.load()
    t1 = time.monotonic()
    try:
        engine.warmup(settings.num_warmup)
    except EngineError as exc:  # a worker that cannot serve its warm-up would answer every request with errors
        raise EngineLoadError(f"warm-up failed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a device fault, say (out of memory): a named start-up error all the same
        raise EngineLoadError(f"warm-up failed: {type(exc).__name__}: {exc}") from exc
    log_fields(
        log,
        "engine ready",
        engine=engine.name,
        version=engine.version,
        device=engine.device,
        sample_rate=engine.sample_rate,
        load_s=round(t1 - t0, 3),
        warmup_s=round(time.monotonic() - t1, 3),
        num_warmup=settings.num_warmup,
    )
    return engine


def run(settings: WorkerSettings) -> int:
    start_dir = Path.cwd()  # the gpt-sovits engine may move to its checkout; a restart starts from here again
    configure_logging(settings.log_level, settings.log_json)
    if settings.allow_unauthenticated_admin:
        log_fields(log, OPEN_WARNING, logging.WARNING)
    log_fields(
        log,
        "starting worker",
        worker=settings.name,
        engine=settings.engine,
        device=settings.resolved_device(),
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        max_queue_size=settings.max_queue_size,
        max_batch=settings.max_batch if settings.batching else 1,
        voice_dir=str(settings.voice_dir),
        tts_config=str(settings.tts_config) if settings.tts_config.is_file() else None,
        enable_concurrent_tts=settings.enable_concurrent_tts,
        num_gpus=settings.num_gpus,
    )
    if not settings.voice_dir.is_dir():
        log_fields(log, "voice directory missing", logging.WARNING, voice_dir=str(settings.voice_dir.resolve()))
    try:
        catalog = CatalogFile(settings.voices) if settings.voices is not None else None
    except CatalogError as exc:
        return refused_start(log, "worker", "voice catalog refused", exc)
    try:
        if settings.api_keys_file is not None:  # checked before an engine load that may take minutes
            load_keys(settings.api_keys_file)
    except KeysError as exc:
        return refused_start(log, "worker", "API keys file refused", exc)
    try:
        engine = load_engine(settings)
    except EngineLoadError as exc:
        return refused_start(log, "worker", "engine failed to load", exc)
    try:
        app = create_app(settings, engine, catalog)
    except KeysError as exc:  # changed since the check above
        return refused_start(log, "worker", "API keys file refused", exc)
    check_fd_budget(settings.limits(), reserve=64)
    config = GuardedConfig(
        app,
        settings.limits(),
        host=settings.bind_addr,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout)),
    )
    server = DrainingServer(config, app.state.service)
    server.run()
    if server.restart:
        log_fields(log, "restarting")
        # orig_argv keeps "-m tts_cli" (or the console script), which sys.argv has already lost.
        os.chdir(start_dir)
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return 0 if server.started else 1
