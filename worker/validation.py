"""The worker's request check: api_v2's ordered checks for its engine, then reference paths in the voice dir."""

from __future__ import annotations

from pathlib import Path

from tts_common.schemas import TTSRequest
from tts_common.validation import InvalidRequest
from tts_common.validation import check_request as check_api_v2

from .engines.base import Engine, StreamMode, SynthesisParams
from .voices import PathRejected, resolve_voice_path


def check_request(
    req: TTSRequest, engine: Engine, voice_dir: Path, max_text_length: int, max_audio_seconds: float
) -> SynthesisParams:
    """Return what the engine needs, or raise InvalidRequest with the first failing check's message."""
    mode = check_api_v2(req, engine.languages, engine.prompt_languages, engine.version, max_text_length)
    try:
        ref = resolve_voice_path(voice_dir, req.ref_audio_path or "", "ref_audio_path")
        aux = tuple(resolve_voice_path(voice_dir, p, "aux_ref_audio_paths") for p in req.aux_ref_audio_paths)
    except PathRejected as exc:
        raise InvalidRequest(str(exc), exc.field) from exc
    # api_v2 lower-cases languages before use (its POST path forgot to: fixed here for both).
    normalized = req.model_copy(
        update={"text_lang": (req.text_lang or "").lower(), "prompt_lang": (req.prompt_lang or "").lower()}
    )
    return SynthesisParams(request=normalized, mode=StreamMode(mode), ref_audio=ref, aux_ref_audio=aux,
                           max_audio_seconds=max_audio_seconds)
