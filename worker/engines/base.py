"""The engine interface: one engine instance owns one device and is only ever called from one executor thread."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from tts_common.schemas import TTSRequest
from tts_common.voices import Voice

from ..loaded_voices import FAILED_HOLD_SECONDS, LoadedVoices, NoVoiceSlot, RecentlyFailed
from .params import Cancelled, CancelToken, StreamMode, SynthesisParams

__all__ = ["Cancelled", "CancelToken", "StreamMode", "SynthesisParams"]  # (re-exported: where engines import them)

if TYPE_CHECKING:
    from .batch import BatchSession


class EngineError(Exception):
    """Synthesis failed; answered as api_v2's 400 `tts failed` with the message as `Exception`."""


class AudioTooLong(EngineError):
    """The request's audio passed `max_audio_seconds`: a clear 400 naming the limit, before memory runs out."""

    def __init__(self, limit_seconds: float) -> None:
        super().__init__(
            f"text: the audio would be longer than the limit of {limit_seconds:g} s per request "
            "(max_audio_seconds): send a shorter text or a smaller fragment_interval"
        )


class VoiceUnavailable(EngineError):
    """A catalog voice could not be loaded here (a weight file missing, every slot pinned): 503, so the router tries
    another worker, with a message naming the voice and the file."""


class EngineUnsupported(EngineError):
    """The engine cannot do this (e.g. switch GPT weights); answered as a clear 400."""


class EngineLoadError(RuntimeError):
    """Start-up cannot continue: names exactly what is missing."""


@dataclass
class DecodeCounters:
    """Tokens an autoregressive decoder made and the engine seconds spent making them (prefill included), whether
    one request at a time or batched: tokens / seconds is the decoding stage's own speed."""

    tokens: int = 0
    seconds: float = 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.tokens += tokens
        self.seconds += seconds


@dataclass
class ClipCounters:
    """Requests whose reference an engine found kept, and those it missed (a new clip or prompt text, a clip
    changed on disk, evicted, or from other weights), for /metrics (written on the engine thread only)."""

    found: int = 0
    missed: int = 0


class Engine(ABC):
    """Load, warm up, synthesize into int16 mono PCM chunks at `sample_rate`."""

    name: str = "engine"
    #: languages `text_lang` may name; `prompt_languages` those `prompt_lang` may name
    languages: tuple[str, ...] = ()
    prompt_languages: tuple[str, ...] = ()
    version: str = ""
    sample_rate: int = 0
    device: str = "cpu"
    #: whether set_gpt_weights / set_sovits_weights do anything (the admin routes refuse early otherwise)
    switches_weights: bool = False
    #: whether it serves catalog voices (`voice` on /tts) besides its default one
    serves_voices: bool = False
    #: whether synthesis reads the reference clip (api_v2 requires one of every request regardless)
    uses_reference: bool = False
    #: load time assumed for a catalog voice before this worker has measured one
    default_voice_load_seconds: float = 2.0

    def __init__(self, max_loaded_voices: int = 1) -> None:
        self.refer_audio: Optional[Path] = None
        self.loaded = LoadedVoices[Any](max_loaded_voices)
        #: an autoregressive engine's decoder work, for /stats (written on the engine thread only)
        self.decoded = DecodeCounters()
        #: an engine that keeps reference clips' features: how often a request's was found, for /metrics
        self.clips = ClipCounters()

    @abstractmethod
    def load(self) -> None:
        """Load weights onto `device`; raise EngineLoadError naming what is missing."""

    @abstractmethod
    def synthesize(self, params: SynthesisParams, cancel: CancelToken) -> Iterator[np.ndarray]:
        """Yield int16 mono chunks at the granularity `params.mode` asks for. Blocking: runs off the event loop."""

    @property
    def max_batch(self) -> int:
        """Most requests this engine can serve at once; above 1 it offers `open_batch`. 1: one at a time."""
        return 1

    def open_batch(self) -> "BatchSession":
        """A session that serves up to `max_batch` requests together, stepped from the engine thread."""
        raise EngineUnsupported(f"engine {self.name} serves one request at a time")

    def output_rate(self, params: SynthesisParams) -> int:
        """Sample rate of this request's audio: the engine's, unless a request option changes it."""
        return self.sample_rate

    def prepare_voice(self, voice: Voice, cancel: CancelToken, spare: frozenset[str] = frozenset(),
                      protect: frozenset[str] = frozenset()) -> Any:
        """Hold `voice` (as the catalog now defines it), loading it if needed, and return its state: on the engine
        thread, between syntheses. A load that fails holds nothing and raises VoiceUnavailable naming the voice and
        what is missing; one that could only evict a voice in `protect` (or a pinned one) loads nothing."""
        try:
            return self.loaded.get(voice.name, voice, lambda: self._load_voice(voice, cancel), self.release_voice,
                                   spare, protect)
        except NoVoiceSlot as exc:
            raise VoiceUnavailable(str(exc)) from exc
        except RecentlyFailed as exc:  # the load's own message, which names the file
            raise VoiceUnavailable(f"voice {voice.name!r} could not be loaded: {exc} (failed moments ago: tried "
                                   f"again after {FAILED_HOLD_SECONDS:g} s or a catalog change)") from exc
        except (EngineLoadError, OSError) as exc:
            raise VoiceUnavailable(f"voice {voice.name!r} could not be loaded: {exc}") from exc

    def voice_state(self, voice: Voice, cancel: CancelToken) -> Any:
        """The held state of `voice`, loading it first if a caller skipped `prepare_voice`."""
        return self.prepare_voice(voice, cancel)

    def _load_voice(self, voice: Voice, cancel: CancelToken) -> Any:
        """Engine state for one catalog voice; raise EngineLoadError naming a missing file."""
        raise EngineUnsupported(f"engine {self.name} serves only its default voice")

    def release_voice(self, state: Any) -> None:
        """Free what an evicted voice held (accelerator memory); the state's references going away is enough for
        engines on the CPU."""
        del state

    def warmup(self, count: int) -> None:
        lang = "en" if "en" in self.languages else self.languages[0]
        req = TTSRequest(text="Warming up the engine.", text_lang=lang, prompt_lang=lang, ref_audio_path="")
        for _ in range(count):
            for _chunk in self.synthesize(SynthesisParams(req, StreamMode.OFF, Path()), CancelToken()):
                pass

    def set_refer_audio(self, path: Path) -> None:
        """Remember a default reference clip (api_v2's /set_refer_audio)."""
        self.refer_audio = path

    def default_weights(self) -> tuple[Optional[str], Optional[str]]:
        """The default voice's (GPT, SoVITS) weight files, where the engine has any."""
        return None, None

    def set_gpt_weights(self, path: Path) -> None:
        raise EngineUnsupported(f"engine {self.name} cannot switch GPT weights")

    def set_sovits_weights(self, path: Path) -> None:
        raise EngineUnsupported(f"engine {self.name} cannot switch SoVITS weights")

    def memory_allocated(self) -> Optional[int]:
        """Accelerator bytes in use by this engine, where the engine can tell."""
        return None


def silence(seconds: float, sample_rate: int) -> np.ndarray:
    return np.zeros(int(round(seconds * sample_rate)), dtype=np.int16)


# GPT-SoVITS emits semantic tokens at 25 Hz: `min_chunk_length` tokens are this many seconds of audio.
SECONDS_PER_TOKEN = 0.04


def shape_stream(
    segments: Iterable[np.ndarray], params: SynthesisParams, sample_rate: int, cancel: CancelToken
) -> Iterator[np.ndarray]:
    """Turn per-segment audio into the chunks a streaming mode asks for, the way GPT-SoVITS's TTS.run does.

    Mode 0 joins segments with `fragment_interval` seconds of silence into one chunk; mode 1 yields each segment
    followed by that silence; modes 2 and 3 cut segments into pieces of `min_chunk_length` tokens' worth of audio,
    for engines that cannot stream below a segment.
    """
    gap = silence(params.request.fragment_interval, sample_rate)
    limit = None if params.max_audio_seconds is None else int(params.max_audio_seconds * sample_rate)
    if params.mode == StreamMode.OFF:
        parts: list[np.ndarray] = []
        total = 0
        for seg in segments:
            cancel.check()
            if parts:
                parts.append(gap)
            parts.append(seg)
            total += len(seg) + (len(gap) if len(parts) > 1 else 0)
            if limit is not None and total > limit:  # checked while joining: the joined whole is never made
                raise AudioTooLong(params.max_audio_seconds or 0.0)
        if parts:
            yield np.concatenate(parts)
        return
    if params.mode == StreamMode.SEGMENT:
        for seg in segments:
            cancel.check()
            yield np.concatenate([seg, gap])
        return
    # At least one token's worth: api_v2 takes min_chunk_length 0, and one-sample chunks would be a flood.
    piece = max(1, int(max(1, params.request.min_chunk_length) * SECONDS_PER_TOKEN * sample_rate))
    for seg in segments:
        cancel.check()
        for start in range(0, len(seg), piece):
            yield seg[start : start + piece]
