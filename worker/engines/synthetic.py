"""Synthetic engine, for benchmarks and load tests only: it stands in for a GPU engine.

It sleeps for a service time that grows with text length (leaving the CPU idle, as a GPU-bound engine would) and
emits a tone as long as speech of that text would be, so the whole HTTP, queue and encoding path is exercised.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import numpy as np

from tts_common.schemas import LANGUAGES_V2
from tts_common.voices import SyntheticVoice, Voice

from ..voices import PathRejected, resolve_inside
from .base import CancelToken, Engine, EngineError, EngineLoadError, SynthesisParams, shape_stream

# Roughly how long speech of one character lasts (about 14 characters per second).
SECONDS_OF_AUDIO_PER_CHAR = 0.07
_SEGMENT_END = re.compile(r"(?<=[.!?;。！？；])\s*")


def split_segments(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SEGMENT_END.split(text)) if s]


class SyntheticEngine(Engine):
    name = "synthetic"
    switches_weights = True
    languages = LANGUAGES_V2
    prompt_languages = LANGUAGES_V2
    version = "synthetic"

    serves_voices = True

    def __init__(self, base_seconds: float, seconds_per_char: float, sample_rate: int, device: str = "cpu",
                 voice_load_seconds: float = 0.0, models_dir: Optional[Path] = None):
        super().__init__()
        self.models_dir = models_dir or Path.cwd()
        self.voice_load_seconds = voice_load_seconds
        self.default_voice_load_seconds = voice_load_seconds
        self.base_seconds = base_seconds
        self.seconds_per_char = seconds_per_char
        self.sample_rate = sample_rate
        self.device = device
        self.gpt_weights: Path | None = None
        self.sovits_weights: Path | None = None

    def load(self) -> None:
        pass

    def warmup(self, count: int) -> None:
        pass  # nothing to warm: a warm-up would only sleep

    def service_time(self, text: str) -> float:
        return self.base_seconds + self.seconds_per_char * len(text)

    def _sleep(self, seconds: float, cancel: CancelToken) -> None:
        # Sleep in slices so a cancelled request frees the executor promptly.
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            cancel.check()
            time.sleep(min(left, 0.02))

    def synthesize(self, params: SynthesisParams, cancel: CancelToken) -> Iterator[np.ndarray]:
        text = params.request.text or ""
        segments = split_segments(text)
        if not segments:
            raise EngineError("text produced no speakable segment")
        tone, speed = 220.0, 1.0
        if params.voice is not None and params.voice.synthetic is not None:
            voice: SyntheticVoice = self.voice_state(params.voice, cancel)
            tone, speed = voice.tone_hz, voice.speed

        def audio() -> Iterator[np.ndarray]:
            self._sleep(self.base_seconds * speed, cancel)
            for seg in segments:
                self._sleep(self.seconds_per_char * len(seg) * speed, cancel)
                n = int(SECONDS_OF_AUDIO_PER_CHAR * len(seg) * self.sample_rate)
                t = np.arange(n, dtype=np.float32) / self.sample_rate
                yield (np.sin(2 * np.pi * tone * t) * 8000).astype(np.int16)

        yield from shape_stream(audio(), params, self.sample_rate, cancel)

    def _load_voice(self, voice: Voice, cancel: CancelToken) -> SyntheticVoice:
        """A synthetic voice "loads" in `voice_load_seconds`, standing in for a model pair's load time."""
        assert voice.synthetic is not None
        self._sleep(self.voice_load_seconds, cancel)
        if voice.synthetic.weights is not None:
            try:
                resolve_inside(self.models_dir, voice.synthetic.weights, "synthetic.weights", "models directory")
            except PathRejected as exc:
                raise EngineLoadError(str(exc)) from None
        return voice.synthetic

    def default_weights(self) -> tuple[Optional[str], Optional[str]]:
        return (str(self.gpt_weights) if self.gpt_weights else None,
                str(self.sovits_weights) if self.sovits_weights else None)

    # Weight switching is recorded (the file must exist) so the admin path can be exercised end to end.
    def set_gpt_weights(self, path: Path) -> None:
        if not path.is_file():
            raise EngineError(f"{path} is not a file")
        self.gpt_weights = path

    def set_sovits_weights(self, path: Path) -> None:
        if not path.is_file():
            raise EngineError(f"{path} is not a file")
        self.sovits_weights = path
