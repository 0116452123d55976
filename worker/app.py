"""The worker's ASGI app: built around an engine that is already loaded and warmed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI

from tts_common.api_keys import KeysFile
from tts_common.http_errors import install_error_handlers
from tts_common.key_guard import KeyGuard, watch_keys
from tts_common.key_quota import KeyQuota
from tts_common.request_id import RequestIDMiddleware
from tts_common.voices import CatalogFile

from . import routes_admin, routes_openai, routes_status, routes_tts
from .engines.base import Engine
from .service import WorkerService
from .settings import WorkerSettings


def create_app(settings: WorkerSettings, engine: Engine, catalog: Optional[CatalogFile] = None) -> FastAPI:
    """The app; a keys file that cannot be used raises KeysError (the caller's to report)."""
    keys = KeysFile(settings.api_keys_file) if settings.api_keys_file is not None else None
    quota = KeyQuota() if settings.api_key_limits else None
    service = WorkerService(settings, engine, catalog)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        watcher = asyncio.create_task(watch_keys(keys, quota), name="api-keys") if keys is not None else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            await service.close()

    app = FastAPI(
        title="tts-cluster worker",
        description="One TTS engine on one device behind the GPT-SoVITS api_v2 contract, with a bounded queue.",
        version="0.1.0",
        lifespan=lifespan,
        # api_v2 clients POST /tts JSON without a Content-Type header, and api_v2 parses it: so do we. (No route
        # here acts on a browser's cookies, which is what FastAPI's strict default guards against.)
        strict_content_type=False,
    )
    app.state.service = service
    install_error_handlers(app)
    routes_admin.install_admin_handlers(app)
    app.include_router(routes_tts.router)
    app.include_router(routes_openai.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_status.router)

    def count(key_id: str, status: int) -> None:
        service.metrics.key_requests.labels(key=service.key_label(key_id), status=str(status)).inc()

    # Its own keys when it has them (a worker serving clients directly); else the key id the router sends.
    app.add_middleware(KeyGuard, keys=keys, quota=quota, count=count, trust_forwarded_id=keys is None)
    app.add_middleware(RequestIDMiddleware)
    return app
