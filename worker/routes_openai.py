"""OpenAI's speech API on the worker: `POST /v1/audio/speech` (synthesis through the same admission, engine and
encoders as api_v2's `/tts`), `GET /v1/models`, `GET /v1/audio/voices`; errors in OpenAI's envelope."""

from __future__ import annotations

import json
from typing import Any, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tts_common.openai_speech import (
    CONTENT_TYPES,
    DEFAULT_MODELS,
    OPENAI_VOICES,
    PCM_RATE,
    RESPONSE_FORMATS,
    OpenAIError,
    check_model,
    error_kind,
    parse_speech,
    resolve_voice,
)
from tts_common.schemas import TTSRequest
from tts_common.voices import VoiceCatalog

from .routes_tts import Answer, handle_tts
from .service import WorkerService, service_of

router = APIRouter(prefix="/v1", tags=["OpenAI"])
MAX_BODY_CHARS = 64 * 1024  # a 4096-character input with every field set fits many times over


def openai_error(exc: OpenAIError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def openai_refusal(status: int, message: str, field_name: Optional[str] = None, exception: Optional[str] = None,
                   headers: Optional[dict[str, str]] = None) -> Response:
    """A refusal of the synthesis path, in OpenAI's envelope (the same statuses as /tts)."""
    text = f"{message}: {exception}" if exception else message
    retry = (headers or {}).get("Retry-After")
    return openai_error(OpenAIError(status, text, param="input" if field_name == "text" else field_name,
                                    kind=error_kind(status), retry_after=int(retry) if retry else None))


def _names(svc: WorkerService) -> tuple[Optional[VoiceCatalog], list[str]]:
    catalog = svc.catalog()
    if catalog is None or not svc.engine.serves_voices:
        return catalog, []
    return catalog, [v.name for v in catalog.for_engine(svc.engine.name)]


def _models(catalog: Optional[VoiceCatalog]) -> list[str]:
    return list(catalog.openai.models) if catalog is not None else list(DEFAULT_MODELS)


def _tts_request(svc: WorkerService, body: Any) -> tuple[TTSRequest, Answer]:
    speech = parse_speech(body)
    catalog, names = _names(svc)
    check_model(speech.model, _models(catalog))
    voice = resolve_voice(speech.voice_id, names,
                          dict(catalog.openai.voices) if catalog is not None else {},
                          catalog.default if catalog is not None else None)
    fmt = speech.response_format
    # Always streamed, segment by segment, as one file of the format whose bytes go out as they are made.
    fields: dict[str, Any] = {
        "text": speech.input, "text_lang": "auto", "voice": voice, "media_type": RESPONSE_FORMATS[fmt],
        "speed_factor": speech.speed, "streaming_mode": 1, "fragment_interval": 0.3,
    }
    if voice is None:  # the engine's own voice: the voice directory's reference clip, as `make demo` writes it
        fields.update(ref_audio_path="reference.wav", prompt_lang="auto")
    answer = Answer(refuse=openai_refusal, rate=PCM_RATE if fmt == "pcm" else None,
                    content_type=CONTENT_TYPES[fmt], sse=speech.stream_format == "sse", continuous=True)
    return TTSRequest(**fields), answer


@router.post("/audio/speech", summary="OpenAI's speech API: audio for `input` in `voice`",
             responses={200: {"content": {t: {} for t in (*CONTENT_TYPES.values(), "text/event-stream")}},
                        400: {"description": "OpenAI's error envelope; `param` names the field."}})
async def speech(request: Request) -> Response:
    svc = service_of(request.app.state)
    try:
        raw = await request.body()
        if len(raw) > MAX_BODY_CHARS:
            raise OpenAIError(413, f"body: larger than {MAX_BODY_CHARS} bytes", code="too_large")
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise OpenAIError(400, "body: not JSON", code="invalid_json") from None
        req, answer = _tts_request(svc, body)
    except OpenAIError as exc:
        return openai_error(exc)
    return await handle_tts(request, req, answer)


@router.get("/models", summary="The model names the speech API accepts")
async def models(request: Request) -> JSONResponse:
    catalog, _ = _names(service_of(request.app.state))
    return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "tts-cluster"}
                                                   for m in _models(catalog)]})


@router.get("/audio/voices", summary="The voices `voice` may name")
async def voices(request: Request) -> JSONResponse:
    catalog, names = _names(service_of(request.app.state))
    aliases = dict(catalog.openai.voices) if catalog is not None else {}
    default = catalog.default if catalog is not None else None
    entries: list[dict[str, Optional[str]]] = [{"id": n, "name": n} for n in names]
    entries += [{"id": a, "name": a, "voice": target} for a, target in aliases.items() if a not in names]
    entries += [{"id": v, "name": v, "voice": default} for v in OPENAI_VOICES if v not in names and v not in aliases]
    return JSONResponse({"object": "list", "voices": entries, "data": entries})
