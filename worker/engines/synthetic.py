"""Synthetic engine, for benchmarks and load tests only: it stands in for a GPU engine.

It sleeps for a service time that grows with text length (leaving the CPU idle, as a GPU-bound engine would) and
emits a tone as long as speech of that text would be, so the whole HTTP, queue and encoding path is exercised.

With `max_batch` > 1 it also batches, as a GPU decoder does: every request in the batch advances by one step of
`batch_step_seconds` of its own work at a time, and a step of b requests takes `batch_step_seconds * b ** alpha`
(sub-linear: one forward pass over b rows costs little more than over one), so at batch 8 and alpha 0.3 the
engine completes about 4x the work per second it does alone, while each request takes about 1.9x as long.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from tts_common.schemas import LANGUAGES_V2
from tts_common.voices import SyntheticVoice, Voice

from ..voices import PathRejected, resolve_inside
from .base import CancelToken, Engine, EngineError, EngineLoadError, StreamMode, SynthesisParams, shape_stream
from .batch import BatchSession, StepOutput

# Roughly how long speech of one character lasts (about 14 characters per second).
SECONDS_OF_AUDIO_PER_CHAR = 0.07
_SEGMENT_END = re.compile(r"(?<=[.!?;。！？；])\s*")


def split_segments(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SEGMENT_END.split(text)) if s]


def tone(chars: int, tone_hz: float, sample_rate: int) -> np.ndarray:
    """A segment's audio: a tone as long as speech of `chars` characters would last."""
    n = int(SECONDS_OF_AUDIO_PER_CHAR * chars * sample_rate)
    t = np.arange(n, dtype=np.float32) / sample_rate
    return (np.sin(2 * np.pi * tone_hz * t) * 8000).astype(np.int16)


class SyntheticEngine(Engine):
    name = "synthetic"
    switches_weights = True
    languages = LANGUAGES_V2
    prompt_languages = LANGUAGES_V2
    version = "synthetic"

    serves_voices = True

    def __init__(self, base_seconds: float, seconds_per_char: float, sample_rate: int, device: str = "cpu",
                 voice_load_seconds: float = 0.0, models_dir: Optional[Path] = None, max_batch: int = 1,
                 batch_step_seconds: float = 0.02, batch_alpha: float = 0.3):
        super().__init__()
        self._max_batch = max(1, max_batch)
        self.batch_step_seconds = batch_step_seconds
        self.batch_alpha = batch_alpha
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

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def open_batch(self) -> BatchSession:
        return SyntheticBatch(self)

    def service_time(self, text: str) -> float:
        return self.base_seconds + self.seconds_per_char * len(text)

    def step_seconds(self, batch: int) -> float:
        """Wall time of one batched step over `batch` requests: the cost model (sub-linear in the batch)."""
        return self.batch_step_seconds * math.pow(max(1, batch), self.batch_alpha)

    def _sleep(self, seconds: float, cancel: CancelToken) -> None:
        # Sleep in slices so a cancelled request frees the executor promptly.
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            cancel.check()
            time.sleep(min(left, 0.02))

    def synthesize(self, params: SynthesisParams, cancel: CancelToken) -> Iterator[np.ndarray]:
        segments = self.segments(params)
        tone_hz, speed = self.voice_of(params, cancel)

        def audio() -> Iterator[np.ndarray]:
            self._sleep(self.base_seconds * speed, cancel)
            for seg in segments:
                self._sleep(self.seconds_per_char * len(seg) * speed, cancel)
                yield tone(len(seg), tone_hz, self.sample_rate)

        yield from shape_stream(audio(), params, self.sample_rate, cancel)

    @staticmethod
    def segments(params: SynthesisParams) -> list[str]:
        segments = split_segments(params.request.text or "")
        if not segments:
            raise EngineError("text produced no speakable segment")
        return segments

    def voice_of(self, params: SynthesisParams, cancel: CancelToken) -> tuple[float, float]:
        """The request's tone (Hz) and speed factor: its catalog voice's, else the default voice's."""
        if params.voice is not None and params.voice.synthetic is not None:
            voice: SyntheticVoice = self.voice_state(params.voice, cancel)
            return voice.tone_hz, voice.speed
        return 220.0, 1.0

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


@dataclass
class _Request:
    params: SynthesisParams
    segments: list[str]
    tone_hz: float
    #: solo engine seconds of work done by the end of each segment (the fixed cost comes before the first)
    ends: list[float]
    progress: float = 0.0
    made: int = 0
    #: mode 0's segments, joined only once all are made (as shape_stream joins them)
    parts: list[np.ndarray] = field(default_factory=list)


class SyntheticBatch(BatchSession):
    """The synthetic engine's batch: each step sleeps the cost model's time for the batch's size, then credits
    every request with one step of its own work; a request gets each segment's audio once its work reaches that
    segment's end, shaped exactly as `synthesize` shapes it alone."""

    def __init__(self, engine: SyntheticEngine) -> None:
        self.engine = engine
        self._requests: dict[int, _Request] = {}

    @property
    def active(self) -> int:
        return len(self._requests)

    def add(self, key: int, params: SynthesisParams, cancel: CancelToken) -> None:
        e = self.engine
        segments = e.segments(params)
        tone_hz, speed = e.voice_of(params, cancel)
        ends, done = [], e.base_seconds * speed
        for seg in segments:
            done += e.seconds_per_char * len(seg) * speed
            ends.append(done)
        self._requests[key] = _Request(params, segments, tone_hz, ends)

    def remove(self, key: int) -> None:
        self._requests.pop(key, None)

    def close(self) -> None:
        self._requests.clear()  # nothing beside the batch to release

    def step(self) -> list[StepOutput]:
        e = self.engine
        e._sleep(e.step_seconds(len(self._requests)), CancelToken())  # one step: never cut short for one request
        outputs = []
        for key, r in list(self._requests.items()):
            r.progress += e.batch_step_seconds
            try:
                out = self._advance(key, r)
            except EngineError as exc:  # this request's alone (its audio too long): the others go on
                out = StepOutput(key, error=exc)
            if out.done or out.error is not None:
                del self._requests[key]
            outputs.append(out)
        return outputs

    def _advance(self, key: int, r: _Request) -> StepOutput:
        rate, free = self.engine.sample_rate, CancelToken()  # cancellation is the scheduler's, between steps
        chunks: list[np.ndarray] = []
        while r.made < len(r.segments) and r.progress >= r.ends[r.made] - 1e-9:
            seg = tone(len(r.segments[r.made]), r.tone_hz, rate)
            r.made += 1
            if r.params.mode == StreamMode.OFF:
                r.parts.append(seg)
            else:  # every mode but 0 shapes each segment on its own, so one at a time is the same audio
                chunks.extend(shape_stream([seg], r.params, rate, free))
        done = r.made == len(r.segments)
        if done and r.params.mode == StreamMode.OFF:
            chunks.extend(shape_stream(r.parts, r.params, rate, free))
        return StepOutput(key, chunks, done)
