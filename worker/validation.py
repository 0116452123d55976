"""The worker's request check: api_v2's ordered checks for its engine, then reference paths in the voice dir."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from tts_common.schemas import LANGUAGES_V1, LANGUAGES_V2, TTSRequest
from tts_common.validation import InvalidRequest
from tts_common.validation import check_request as check_api_v2
from tts_common.voices import Voice, VoiceCatalog

from .engines.base import AudioTooLong, Engine, StreamMode, SynthesisParams
from .voices import PathMissing, PathRejected, resolve_voice_path

# Marks every engine splits a text at; each split adds `fragment_interval` seconds of silence to the audio.
_SENTENCE_MARKS = frozenset(".!?;。！？；\n")


def silence_seconds(text: str, fragment_interval: float) -> float:
    """The silence a text's sentence marks add between its pieces: known before any synthesis. GPT-SoVITS builds a
    whole answer in memory before the worker sees it, so a text of 1000 marks with 10 s between them must be
    refused here, not after 10,000 s of audio were made. (Streaming mode 1 adds one gap more, after the last
    piece: at most fragment_interval, which is itself held to max_audio_seconds.)"""
    if not fragment_interval > 0:
        return 0.0  # none, or a value the engine cannot use: its own `tts failed` says so
    return fragment_interval * sum(1 for c in text.rstrip("".join(_SENTENCE_MARKS) + " ") if c in _SENTENCE_MARKS)


# GPT-SoVITS v3/v4 run `sample_steps` solver steps per segment in one engine call that cannot stop between them:
# past this, one request would hold the engine for hours whatever its deadline.
MAX_SAMPLE_STEPS = 1000


# Speech is never faster than this at speed_factor 1 (about 3x the fastest human speech), so text / speed_factor
# times this is a floor on the audio a request asks for.
_MIN_SECONDS_PER_CHAR = 0.02


def spoken_seconds_floor(text: str, speed_factor: float) -> float:
    """The least audio a text can make at `speed_factor`: a tiny speed_factor asks for hours of audio from one line
    (every engine stretches its output by 1 / speed_factor), which must be refused before the engine allocates it."""
    if not speed_factor > 0:
        return 0.0  # not a speed an engine can use: its own `tts failed` answer says so
    return len(text.strip()) * _MIN_SECONDS_PER_CHAR / speed_factor


def _aux_refs(voice_dir: Path, paths: list[str]) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """Resolved aux clips, and those skipped as api_v2's pipeline skips them (empty, or not found). A path that
    leaves the voice directory is still refused: that is confinement, not tolerance."""
    found: list[Path] = []
    skipped: list[str] = []
    for raw in paths:
        if not raw.strip():
            skipped.append(raw)
            continue
        try:
            found.append(resolve_voice_path(voice_dir, raw, "aux_ref_audio_paths"))
        except PathMissing:
            skipped.append(raw)
    return tuple(found), tuple(skipped)


class UnknownVoice(InvalidRequest):
    """A `voice` the catalog does not have: 404, naming the voices it has."""


def choose_voice(req: TTSRequest, engine: Engine, catalog: Optional[VoiceCatalog]) -> tuple[TTSRequest, Optional[Voice]]:
    """The catalog voice a request asks for (or the catalog's default), with its presets applied to the parameters
    the request leaves unset; (req, None) for the engine's own default voice, as api_v2 serves."""
    name = req.voice or (catalog.default if catalog is not None and engine.serves_voices else None)
    if name is None:
        return req, None
    voice = catalog.get(name) if catalog is not None else None
    if voice is None:
        known = ", ".join(catalog.names()) if catalog is not None and catalog.voices else "none: no voice catalog"
        raise UnknownVoice(f"voice: {name!r} is not in the voice catalog ({known})", "voice")
    if not engine.serves_voices:
        raise InvalidRequest(f"voice: engine {engine.name} serves only its default voice", "voice")
    if not voice.supports(engine.name):
        raise InvalidRequest(f"voice: {name!r} has nothing for engine {engine.name} in the catalog", "voice")
    presets = {k: v for k, v in voice.defaults.items() if k not in req.model_fields_set}
    return (req.model_copy(update=presets) if presets else req), voice


def with_voice_reference(req: TTSRequest, voice: Voice) -> TTSRequest:
    """A GPT-SoVITS voice's own reference clip with its own prompt text and language (a clip and the text spoken in
    it belong together), and its aux clips unless the request names some, for a request that gives no reference clip
    of its own; one that does keeps its own clip and prompt, with the voice's weights."""
    ref = voice.gpt_sovits
    if ref is None or req.ref_audio_path:
        return req
    update: dict[str, object] = {"ref_audio_path": ref.ref_audio, "prompt_text": ref.prompt_text,
                                 "prompt_lang": ref.prompt_lang}
    if "aux_ref_audio_paths" not in req.model_fields_set:
        update["aux_ref_audio_paths"] = list(ref.aux_ref_audio)
    return req.model_copy(update=update)


def _voice_languages(voice: Optional[Voice], engine: Engine) -> tuple[tuple[str, ...], str]:
    """The languages a request may use with this voice: a GPT-SoVITS v1 voice speaks v1's (upstream would assert)."""
    if voice is not None and voice.gpt_sovits is not None and voice.gpt_sovits.version == "v1":
        return LANGUAGES_V1, "v1"
    if voice is not None and engine.name == "piper":  # a Piper voice speaks its own language, whatever text_lang
        return LANGUAGES_V2, engine.version
    return engine.languages, engine.version


def check_request(
    req: TTSRequest, engine: Engine, voice_dir: Path, max_text_length: int, max_audio_seconds: float,
    catalog: Optional[VoiceCatalog] = None,
) -> SynthesisParams:
    """Return what the engine needs, or raise InvalidRequest with the first failing check's message."""
    req, voice = choose_voice(req, engine, catalog)
    if voice is not None:
        req = with_voice_reference(req, voice)
    # A voice's engine that reads no reference clip (synthetic, piper) needs none from a request naming the voice.
    needs_reference = voice is None or engine.uses_reference
    languages, version = _voice_languages(voice, engine)
    mode = check_api_v2(req, languages, engine.prompt_languages, version, max_text_length,
                        reference_required=needs_reference)
    if not math.isfinite(req.fragment_interval) or req.fragment_interval > max_audio_seconds:
        raise InvalidRequest(f"fragment_interval: {req.fragment_interval:g} s of silence is more than the "
                             f"{max_audio_seconds:g} s of audio a request may make (max_audio_seconds)",
                             "fragment_interval")
    if silence_seconds(req.text or "", req.fragment_interval) > max_audio_seconds:
        raise InvalidRequest(str(AudioTooLong(max_audio_seconds)), "text")
    if req.sample_steps > MAX_SAMPLE_STEPS:
        raise InvalidRequest(f"sample_steps: {req.sample_steps} is more than {MAX_SAMPLE_STEPS}, which one request "
                             "may ask of the engine", "sample_steps")
    if spoken_seconds_floor(req.text or "", req.speed_factor) > max_audio_seconds:
        raise InvalidRequest(f"speed_factor: {req.speed_factor:g} would make this text longer than "
                             f"{max_audio_seconds:g} s of audio (max_audio_seconds)", "speed_factor")
    try:
        ref = resolve_voice_path(voice_dir, req.ref_audio_path, "ref_audio_path") if req.ref_audio_path else Path()
        aux, skipped = _aux_refs(voice_dir, req.aux_ref_audio_paths)
    except PathRejected as exc:
        raise InvalidRequest(str(exc), exc.field) from exc
    # api_v2 lower-cases languages before use (its POST path forgot to: fixed here for both).
    normalized = req.model_copy(
        update={"text_lang": (req.text_lang or "").lower(), "prompt_lang": (req.prompt_lang or "").lower()}
    )
    return SynthesisParams(request=normalized, mode=StreamMode(mode), ref_audio=ref, aux_ref_audio=aux,
                           skipped_aux=skipped, max_audio_seconds=max_audio_seconds, voice=voice)
