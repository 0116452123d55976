"""OpenAI's speech API through the router: `POST /v1/audio/speech` goes to a worker as `/tts` does (least work,
retries before any byte, streams passed through chunk by chunk); the lists come from a healthy worker. The worker
maps voices and models (its catalog); the router checks the body's shape first, so a bad request never takes a
worker slot, and answers its own errors in OpenAI's envelope."""

from __future__ import annotations

import json
import time
from typing import Optional

import aiohttp
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tts_common.openai_speech import OpenAIError, error_kind, parse_speech

from .poison import fingerprint
from .proxy import Forwarder
from .routes import service_of

router = APIRouter(prefix="/v1", tags=["OpenAI"])


def openai_error(status: int, message: str, headers: Optional[dict[str, str]] = None) -> Response:
    return JSONResponse(OpenAIError(status, message, kind=error_kind(status)).body(), status_code=status,
                        headers=headers)


def _refused(exc: OpenAIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


@router.post("/audio/speech", summary="OpenAI's speech API, on the worker with the least work")
async def speech(request: Request) -> Response:
    svc = service_of(request)
    body = await request.body()
    try:
        try:
            parsed = json.loads(body or b"null")
        except ValueError:
            raise OpenAIError(400, "body: not JSON", code="invalid_json") from None
        req = parse_speech(parsed)
    except OpenAIError as exc:
        svc.metrics.requests.labels(status=str(exc.status), worker="none").inc()
        return _refused(exc)
    # A catalog voice named as such is routed where it is held; an alias or OpenAI's own names are the worker's to map.
    voice = req.voice_id if svc.pool.known_voice(req.voice_id) else None
    forwarder = Forwarder(svc, request, len(req.input), body, fingerprint(body.decode("utf-8", "replace")), voice,
                          path="/v1/audio/speech", refuse=openai_error)
    return await forwarder.run()


async def _from_a_worker(request: Request, path: str) -> Response:
    svc = service_of(request)
    now = time.monotonic()
    for worker in svc.pool.ordered():
        if not worker.healthy(now, svc.pool.stale_after):
            continue
        try:
            async with svc.control_session.get(f"{worker.url}{path}", timeout=aiohttp.ClientTimeout(total=5)) as r:
                if r.status == 200:
                    return Response(await r.read(), media_type="application/json")
        except (TimeoutError, aiohttp.ClientError):
            continue
    return openai_error(503, "no healthy worker", {"Retry-After": str(svc.pool.retry_after())})


@router.get("/models", summary="The model names the speech API accepts (from a worker)")
async def models(request: Request) -> Response:
    return await _from_a_worker(request, "/v1/models")


@router.get("/audio/voices", summary="The voices `voice` may name (from a worker)")
async def voices(request: Request) -> Response:
    return await _from_a_worker(request, "/v1/audio/voices")
