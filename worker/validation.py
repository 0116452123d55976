"""api_v2's request checks, in api_v2's order and with its messages, plus the limits a shared service needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from tts_common.schemas import MEDIA_TYPES, TEXT_SPLIT_METHODS, TTSRequest

from .engines.base import Engine, StreamMode, SynthesisParams
from .voices import PathRejected, resolve_voice_path

STREAMING_MODE_MESSAGE = "the value of streaming_mode must be 0, 1, 2, 3(int) or true/false(bool)"


class InvalidRequest(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def parse_streaming_mode(value: Union[bool, int, str, None]) -> StreamMode:
    """bool or int 0-3; query strings arrive as text ("true", "2")."""
    if value is None:
        return StreamMode.OFF
    if isinstance(value, bool):
        return StreamMode.SEGMENT if value else StreamMode.OFF
    if isinstance(value, str):
        text = value.strip().lower()
        words = {"true": 1, "false": 0}
        if text in words:
            return StreamMode(words[text])
        if text in ("0", "1", "2", "3"):
            return StreamMode(int(text))
        raise InvalidRequest(STREAMING_MODE_MESSAGE, "streaming_mode")
    if isinstance(value, int) and 0 <= value <= 3:
        return StreamMode(value)
    raise InvalidRequest(STREAMING_MODE_MESSAGE, "streaming_mode")


def _blank(v: Any) -> bool:
    return v is None or v == ""


def check_request(req: TTSRequest, engine: Engine, voice_dir: Path, max_text_length: int) -> SynthesisParams:
    """Return what the engine needs, or raise InvalidRequest with the first failing check's message."""
    if _blank(req.ref_audio_path):
        raise InvalidRequest("ref_audio_path is required", "ref_audio_path")
    if _blank(req.text):
        raise InvalidRequest("text is required", "text")
    if _blank(req.text_lang):
        raise InvalidRequest("text_lang is required", "text_lang")
    assert req.text_lang is not None
    if req.text_lang.lower() not in engine.languages:
        raise InvalidRequest(
            f"text_lang: {req.text_lang} is not supported in version {engine.version}", "text_lang"
        )
    if _blank(req.prompt_lang):
        raise InvalidRequest("prompt_lang is required", "prompt_lang")
    assert req.prompt_lang is not None
    if req.prompt_lang.lower() not in engine.prompt_languages:
        raise InvalidRequest(
            f"prompt_lang: {req.prompt_lang} is not supported in version {engine.version}", "prompt_lang"
        )
    if req.media_type not in MEDIA_TYPES:
        raise InvalidRequest(f"media_type: {req.media_type} is not supported", "media_type")
    if req.text_split_method not in TEXT_SPLIT_METHODS:
        raise InvalidRequest(f"text_split_method:{req.text_split_method} is not supported", "text_split_method")
    mode = parse_streaming_mode(req.streaming_mode)
    # Beyond api_v2: a bound on work per request, and reference paths confined to the voice directory.
    assert req.text is not None
    if len(req.text) > max_text_length:
        raise InvalidRequest(
            f"text: {len(req.text)} characters is over the limit of {max_text_length}", "text"
        )
    try:
        ref = resolve_voice_path(voice_dir, req.ref_audio_path or "", "ref_audio_path")
        aux = tuple(resolve_voice_path(voice_dir, p, "aux_ref_audio_paths") for p in req.aux_ref_audio_paths)
    except PathRejected as exc:
        raise InvalidRequest(str(exc), exc.field) from exc
    # api_v2 lower-cases languages before use (its POST path forgot to: fixed here for both).
    normalized = req.model_copy(
        update={"text_lang": req.text_lang.lower(), "prompt_lang": req.prompt_lang.lower()}
    )
    return SynthesisParams(request=normalized, mode=mode, ref_audio=ref, aux_ref_audio=aux)
