"""api_v2's admin routes (`/control`, `/set_*`), off unless an admin token is configured and sent; and the router's
internal call `POST /voices/{name}/load` (a background load of a catalog voice), behind the same token where one is
configured."""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from tts_common.auth import admin_refusal
from tts_common.http_errors import error
from tts_common.schemas import MessageBody

from .engines.base import EngineError
from .scheduler import Draining, QueueFull
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


def _internal(request: Request) -> WorkerService:
    """The router's internal calls: with an admin token configured, only with it. Without one they are as open as
    /tts, which they can do no more than (a request for a catalog voice loads it too), unless API keys guard /tts:
    then an admin token is needed, or anyone who reaches the port could make the worker load voices for free."""
    svc = service_of(request.app.state)
    settings = svc.settings
    if settings.allow_unauthenticated_admin:
        return svc
    token = settings.admin_token
    if token is None or not token.get_secret_value():
        if settings.api_keys_file is not None:
            raise _Forbidden("internal routes need an admin token where API keys guard /tts: configure one "
                             "(TTSC_ADMIN_TOKEN) for the router and the workers")
        return svc
    refusal = admin_refusal(token, request.headers.get("authorization", ""))
    if refusal:
        raise _Forbidden(refusal)
    return svc


@router.post("/voices/{name}/load", response_model=MessageBody, status_code=202,
             summary="load a catalog voice in the background (the router's replica of a voice under pressure)",
             responses={200: {"model": MessageBody, "description": "Held already, or its load is under way."},
                        404: {"description": "No such voice in the catalog."},
                        503: {"description": "Draining, or background loads enough under way."}})
async def load_voice(name: str, protect: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI's way
                     svc: WorkerService = Depends(_internal)) -> JSONResponse:
    """Queued behind the requests admitted so far, run on the engine thread between syntheses, answered at once:
    nothing waits for it. It evicts none of the voices in `protect` (those only this worker holds, as the router
    sees it) nor any voice the admitted requests want; with no other voice to evict, it loads nothing."""
    catalog = svc.catalog()
    voice = catalog.get(name) if catalog is not None else None
    if voice is None or not svc.engine.serves_voices or not voice.supports(svc.engine.name):
        return error(404, f"voice: {name!r} is not a catalog voice this worker serves", "voice")
    try:
        queued = svc.scheduler.load_in_background(voice, frozenset(protect))
    except Draining:
        return error(503, "worker is draining", None, headers={"Retry-After": "1"})
    except QueueFull as exc:
        return error(503, "background loads enough under way: retry later", None,
                     headers={"Retry-After": str(exc.retry_after)})
    if not queued:
        return JSONResponse({"message": f"voice {name!r} is held here or on its way"}, status_code=200)
    return JSONResponse({"message": f"voice {name!r}: loading in the background"}, status_code=202)
