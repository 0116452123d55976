"""The router's HTTP surface: api_v2's /tts passed through, admin fan-out, cluster stats and health."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tts_common.http_errors import error
from tts_common.key_guard import key_id_of
from tts_common.logs import log_fields
from tts_common.request_id import request_id_of
from tts_common.schemas import Health, MessageBody, TTSRequest
from tts_common.validation import InvalidRequest, as_api_v2_get, check_request

from .admin import (
    AdminForbidden,
    BadCommand,
    ControlBusy,
    FanOut,
    MissingPath,
    NoWorker,
    fan_out,
    rolling_control,
    switch_weights,
)
from .poison import fingerprint
from .pool import UnknownVoice
from .proxy import Forwarder, log
from .service import RouterService
from .stats import ConcurrentStats, concurrent_stats

router = APIRouter()


def service_of(request: Request) -> RouterService:
    svc = getattr(request.app.state, "service", None)
    if not isinstance(svc, RouterService):
        raise RuntimeError("router service is not initialised")
    return svc


async def _tts(request: Request, req: TTSRequest, body: Optional[bytes]) -> Response:
    svc = service_of(request)
    facts = svc.pool.engine_facts()
    try:
        # The same ordered checks the worker makes, with its engine's facts from /stats: a bad request never
        # occupies a worker slot. Reference paths are the worker's to check (its voice directory).
        # A request naming a voice may leave the reference out: the voice's own is the worker's to fill in.
        if facts is not None:
            check_request(req, facts.languages, facts.prompt_languages, facts.engine_version, facts.max_text_length,
                          reference_required=not req.voice)
        else:
            check_request(req, None, None, "", None, reference_required=not req.voice)
    except InvalidRequest as exc:
        log_fields(log, "tts request", request_id=request_id_of(request.scope), method=request.method, status=400,
                   worker=None, attempts=0, chars=len(req.text or ""), key=key_id_of(request.scope), note=exc.message)
        svc.metrics.requests.labels(status="400", worker="none").inc()
        return error(400, exc.message, exc.field)
    try:
        svc.pool.check_voice(req.voice or None)
    except UnknownVoice as exc:
        svc.metrics.requests.labels(status="404", worker="none").inc()
        return error(404, str(exc), "voice")
    fp = fingerprint(req.model_dump_json())
    return await Forwarder(svc, request, len(req.text or ""), body, fp, req.voice or None).run()


TTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"audio/wav": {}, "audio/raw": {}, "audio/ogg": {}, "audio/aac": {}}},
    400: {"description": "Invalid request; `message` names the field."},
    404: {"description": "`voice` is not in the workers' voice catalog."},
    502: {"description": "Every worker tried failed."},
    503: {"description": "Every worker is full or none is healthy; see Retry-After."},
}


@router.get("/tts", responses=TTS_RESPONSES, summary="Synthesize speech (query), on the least-loaded worker")
async def tts_get(request: Request, params: Annotated[TTSRequest, Query()]) -> Response:
    return await _tts(request, as_api_v2_get(params), None)


@router.post("/tts", responses=TTS_RESPONSES, summary="Synthesize speech (JSON body), on the least-loaded worker")
async def tts_post(request: Request, params: TTSRequest) -> Response:
    return await _tts(request, params, await request.body())


@router.get("/concurrent_stats", response_model=ConcurrentStats, summary="cluster-wide stats in the seed's shape")
async def cluster_stats(request: Request) -> ConcurrentStats:
    svc = service_of(request)
    return concurrent_stats(svc.pool, svc.counters, svc.default_voice)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> JSONResponse:
    if service_of(request).ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "starting"}, status_code=503, headers={"Retry-After": "1"})


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(service_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


_AdminError = (BadCommand, MissingPath, ControlBusy, AdminForbidden, NoWorker)


def _admin_refused(exc: Exception) -> JSONResponse:
    """An admin call refused before any worker acted: one mapping for every admin route."""
    if isinstance(exc, BadCommand):
        return error(400, str(exc), "command")
    if isinstance(exc, MissingPath):
        return error(400, str(exc), "weights_path")
    if isinstance(exc, ControlBusy):
        return error(409, str(exc), headers={"Retry-After": "5"})
    if isinstance(exc, AdminForbidden):
        return error(403, str(exc))
    return error(503, str(exc), headers={"Retry-After": "1"})


def _admin_answer(result: FanOut, **extra: object) -> JSONResponse:
    if result.first_failure is None:
        return JSONResponse({"message": "success", "workers": result.per_worker})
    status, body = result.first_failure
    return JSONResponse({**body, **extra, "workers": result.per_worker}, status_code=status)


async def _fan_out(request: Request, path: str) -> JSONResponse:
    try:
        result = await fan_out(service_of(request), path, request.url.query,
                               request.headers.get("authorization", ""))
    except _AdminError as exc:
        return _admin_refused(exc)
    return _admin_answer(result)


@router.get("/control", response_model=MessageBody,
            summary="admin: restart|exit every worker, one at a time (each serving again before the next)")
async def control(request: Request, command: Optional[str] = None) -> JSONResponse:
    try:
        result = await rolling_control(service_of(request), command, request.url.query,
                                       request.headers.get("authorization", ""))
    except _AdminError as exc:
        return _admin_refused(exc)
    return _admin_answer(result)


@router.get("/set_refer_audio", response_model=MessageBody, summary="admin: on every worker")
async def set_refer_audio(request: Request, refer_audio_path: Optional[str] = None) -> JSONResponse:
    return await _fan_out(request, "/set_refer_audio")


async def _switch(request: Request, kind: str) -> JSONResponse:
    try:
        result = await switch_weights(service_of(request), kind, request.url.query,
                                      request.headers.get("authorization", ""))
    except _AdminError as exc:
        return _admin_refused(exc)
    return _admin_answer(FanOut(result.per_worker, result.first_failure), rolled_back=result.rolled_back)


@router.get("/set_gpt_weights", response_model=MessageBody,
            summary="admin: the cluster's default voice, on every worker or none; kept for workers that join later")
async def set_gpt_weights(request: Request, weights_path: Optional[str] = None) -> JSONResponse:
    return await _switch(request, "gpt")


@router.get("/set_sovits_weights", response_model=MessageBody,
            summary="admin: the cluster's default voice, on every worker or none; kept for workers that join later")
async def set_sovits_weights(request: Request, weights_path: Optional[str] = None) -> JSONResponse:
    return await _switch(request, "sovits")
