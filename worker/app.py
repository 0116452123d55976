"""The worker's ASGI app: built around an engine that is already loaded and warmed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI

from tts_common.http_errors import install_error_handlers
from tts_common.request_id import RequestIDMiddleware
from tts_common.voices import CatalogFile

from . import routes_admin, routes_openai, routes_status, routes_tts
from .engines.base import Engine
from .service import WorkerService
from .settings import WorkerSettings


def create_app(settings: WorkerSettings, engine: Engine, catalog: Optional[CatalogFile] = None) -> FastAPI:
    service = WorkerService(settings, engine, catalog)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
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
    app.add_middleware(RequestIDMiddleware)
    return app
