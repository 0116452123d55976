"""The router's ASGI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tts_common.api_keys import KeysFile
from tts_common.http_errors import install_error_handlers
from tts_common.key_guard import KeyGuard, watch_keys
from tts_common.key_quota import KeyQuota
from tts_common.request_id import RequestIDMiddleware

from . import routes, routes_openai
from .admin import worker_caller
from .service import RouterService
from .settings import RouterSettings


def create_app(settings: RouterSettings) -> FastAPI:
    """The app; a keys file that cannot be used raises KeysError (the caller's to report)."""
    keys = KeysFile(settings.api_keys_file) if settings.api_keys_file is not None else None
    quota = KeyQuota() if settings.api_key_limits else None
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The HTTP client and the pollers belong to the server's event loop, so they are made here.
        service = RouterService(settings)
        app.state.service = service
        await service.start()
        keeper = asyncio.create_task(service.default_voice.keep(worker_caller(service), settings.poll_interval),
                                     name="default-voice")
        watcher = asyncio.create_task(watch_keys(keys, quota), name="api-keys") if keys is not None else None
        try:
            yield
        finally:
            keeper.cancel()
            if watcher is not None:
                watcher.cancel()
            await service.close()

    app = FastAPI(
        title="tts-cluster router",
        description="The public entry: GPT-SoVITS api_v2 /tts on the least-loaded worker, with retries, "
        "streaming pass-through, /concurrent_stats and /metrics.",
        version="0.1.0",
        lifespan=lifespan,
        # api_v2 clients POST /tts JSON without a Content-Type header, and api_v2 parses it: so do we. (No route
        # here acts on a browser's cookies, which is what FastAPI's strict default guards against.)
        strict_content_type=False,
    )
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(routes_openai.router)

    def count(key_id: str, status: int) -> None:
        # The service (and its metrics) is made in the lifespan, before any request.
        service = getattr(app.state, "service", None)
        if isinstance(service, RouterService):
            service.metrics.key_requests.labels(key=key_id, status=str(status)).inc()

    app.add_middleware(KeyGuard, keys=keys, quota=quota, count=count)
    app.add_middleware(RequestIDMiddleware)
    return app
