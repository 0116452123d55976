"""api_v2's admin routes (`/control`, `/set_*`), off unless an admin token is configured and sent."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tts_common.auth import admin_refusal
from tts_common.http_errors import error
from tts_common.schemas import MessageBody

from .engines.base import EngineError
from .scheduler import QueueFull
from .service import WorkerService, service_of
from .voices import PathRejected, resolve_inside, resolve_voice_path


class _Forbidden(Exception):
    pass


def _admin(request: Request) -> WorkerService:
    svc = service_of(request.app.state)
    refusal = admin_refusal(svc.settings.admin_token, request.headers.get("authorization", ""),
                            open_to_all=svc.settings.allow_unauthenticated_admin)
    if refusal:
        raise _Forbidden(refusal)
    return svc


async def _forbidden(_: Request, exc: Exception) -> Response:
    return error(403, str(exc))


def install_admin_handlers(app: FastAPI) -> None:
    app.add_exception_handler(_Forbidden, _forbidden)


router = APIRouter(responses={403: {"description": "No or wrong admin token."}})


@router.get("/control", response_model=MessageBody, summary="restart or exit the worker (after draining)")
async def control(command: Optional[str] = None, svc: WorkerService = Depends(_admin)) -> JSONResponse:
    if command in (None, ""):
        return error(400, "command is required", "command")
    if command not in ("restart", "exit"):
        return error(400, f"command: {command} is not supported (restart or exit)", "command")
    if svc.request_shutdown is None:
        return error(400, f"command: {command} is not available in this process", "command")
    svc.request_shutdown(command == "restart")
    return JSONResponse({"message": f"{command}: draining admitted requests first"})


@router.get("/set_refer_audio", response_model=MessageBody, summary="set the default reference clip")
async def set_refer_audio(
    refer_audio_path: Optional[str] = None, svc: WorkerService = Depends(_admin)
) -> JSONResponse:
    if refer_audio_path in (None, ""):
        return error(400, "set refer audio failed", "refer_audio_path", "refer_audio_path is required")
    try:
        path = resolve_voice_path(svc.settings.voice_dir, refer_audio_path, "refer_audio_path")
        await svc.scheduler.run_in_engine_thread(lambda: svc.engine.set_refer_audio(path))
    except PathRejected as exc:
        return error(400, "set refer audio failed", exc.field, str(exc))
    except EngineError as exc:
        return error(400, "set refer audio failed", "refer_audio_path", str(exc))
    return JSONResponse({"message": "success"})


async def _switch(svc: WorkerService, kind: str, weights_path: Optional[str]) -> JSONResponse:
    if weights_path in (None, ""):
        return error(400, f"{kind} weight path is required", "weights_path")
    if not svc.engine.switches_weights:
        label = "GPT" if kind == "gpt" else "SoVITS"
        return error(400, f"change {kind} weight failed", "weights_path",
                     f"engine {svc.engine.name} cannot switch {label} weights")
    switch = svc.engine.set_gpt_weights if kind == "gpt" else svc.engine.set_sovits_weights
    assert svc.settings.models_dir is not None  # set at start-up
    try:
        path = resolve_inside(svc.settings.models_dir, weights_path, "weights_path", "models directory")
    except PathRejected as exc:
        return error(400, f"change {kind} weight failed", exc.field, str(exc))
    try:
        # Runs on the engine thread after the requests admitted before it, which keep the weights they came to.
        await svc.scheduler.run_after_admitted(lambda: switch(path))
    except QueueFull as exc:
        return error(503, f"change {kind} weight failed: too many switches waiting", "weights_path",
                     headers={"Retry-After": str(exc.retry_after)})
    except EngineError as exc:
        return error(400, f"change {kind} weight failed", "weights_path", str(exc))
    return JSONResponse({"message": "success"})


@router.get("/set_gpt_weights", response_model=MessageBody, summary="switch GPT (t2s) weights")
async def set_gpt_weights(weights_path: Optional[str] = None, svc: WorkerService = Depends(_admin)) -> JSONResponse:
    return await _switch(svc, "gpt", weights_path)


@router.get("/set_sovits_weights", response_model=MessageBody, summary="switch SoVITS (vits) weights")
async def set_sovits_weights(
    weights_path: Optional[str] = None, svc: WorkerService = Depends(_admin)
) -> JSONResponse:
    return await _switch(svc, "sovits", weights_path)
