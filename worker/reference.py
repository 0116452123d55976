"""The default reference clip, spoken by the bundled voice, so `ref_audio_path=reference.wav` works at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .encoders import encode
from .engines.base import CancelToken, StreamMode, SynthesisParams

REFERENCE_TEXT = "This is the reference voice of the text to speech cluster."


def write_reference_clip(voice_dir: Path, force: bool = False) -> Path:
    voice_dir.mkdir(parents=True, exist_ok=True)
    target = voice_dir / "reference.wav"
    if target.is_file() and not force:
        return target
    from tts_common.schemas import TTSRequest

    from .engines.piper_engine import PiperEngine

    engine = PiperEngine(None, deterministic=True)
    engine.load()
    req = TTSRequest(text=REFERENCE_TEXT, text_lang="en", prompt_lang="en", ref_audio_path="reference.wav")
    chunks = list(engine.synthesize(SynthesisParams(req, StreamMode.OFF, target), CancelToken()))
    tmp = target.with_suffix(".wav.tmp")
    tmp.write_bytes(encode(np.concatenate(chunks), engine.sample_rate, "wav"))
    tmp.replace(target)
    return target
