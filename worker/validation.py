"""The worker's request check: api_v2's ordered checks for its engine, then reference paths in the voice dir."""

from __future__ import annotations

from pathlib import Path

from tts_common.schemas import TTSRequest
from tts_common.validation import InvalidRequest
from tts_common.validation import check_request as check_api_v2

from .engines.base import AudioTooLong, Engine, StreamMode, SynthesisParams
from .voices import PathRejected, resolve_voice_path

# Marks every engine splits a text at; each split adds `fragment_interval` seconds of silence to the audio.
_SENTENCE_MARKS = frozenset(".!?;。！？；\n")


def silence_seconds(text: str, fragment_interval: float) -> float:
    """The silence a text's sentence marks add between its pieces: known before any synthesis. GPT-SoVITS builds a
    whole answer in memory before the worker sees it, so a text of 1000 marks with 10 s between them must be
    refused here, not after 10,000 s of audio were made."""
    return fragment_interval * sum(1 for c in text.rstrip("".join(_SENTENCE_MARKS) + " ") if c in _SENTENCE_MARKS)


def check_request(
    req: TTSRequest, engine: Engine, voice_dir: Path, max_text_length: int, max_audio_seconds: float
) -> SynthesisParams:
    """Return what the engine needs, or raise InvalidRequest with the first failing check's message."""
    mode = check_api_v2(req, engine.languages, engine.prompt_languages, engine.version, max_text_length)
    if silence_seconds(req.text or "", req.fragment_interval) > max_audio_seconds:
        raise InvalidRequest(str(AudioTooLong(max_audio_seconds)), "text")
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
