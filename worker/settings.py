"""The worker's one settings object: flags > `TTSC_*` env vars > `tts_infer.yaml` > defaults."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tts_common.settings_base import ServingSettings

DEFAULT_TTS_CONFIG = "GPT_SoVITS/configs/tts_infer.yaml"
EngineName = Literal["piper", "synthetic", "gpt-sovits"]


def read_tts_infer_yaml(path: Path) -> dict[str, Any]:
    """Map GPT-SoVITS's `tts_infer.yaml` onto our fields.

    The file's `custom` block wins over `v2` (as in api_v2); the seed's `enable_concurrent_tts` and `num_gpus` sit at
    top level, and so may our own knobs (`max_queue_size`, `num_warmup`) or a `tts_cluster:` block with any field.
    """
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at top level")
    out: dict[str, Any] = {}
    block = data.get("custom") or data.get("v2")
    if isinstance(block, dict):
        out["gpt_sovits_config"] = block
    for key in ("enable_concurrent_tts", "num_gpus", "max_queue_size", "num_warmup"):
        if key in data:
            out[key] = data[key]
    extra = data.get("tts_cluster")
    if isinstance(extra, dict):
        out.update(extra)
    return out


class _TTSInferYamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], init_kwargs: dict[str, Any]):
        super().__init__(settings_cls)
        path = init_kwargs.get("tts_config") or os.environ.get("TTSC_TTS_CONFIG") or DEFAULT_TTS_CONFIG
        self._values = read_tts_infer_yaml(Path(path))

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


class WorkerSettings(ServingSettings):
    model_config = SettingsConfigDict(env_prefix="TTSC_", extra="ignore")

    bind_addr: str = Field("127.0.0.1", description="Address to listen on (api_v2: -a).")
    port: int = Field(9880, ge=1, le=65535, description="Port to listen on (api_v2: -p).")
    tts_config: Path = Field(Path(DEFAULT_TTS_CONFIG), description="GPT-SoVITS tts_infer.yaml (api_v2: -c).")
    engine: EngineName = Field("piper", description="TTS engine of this worker.")
    device: Optional[str] = Field(
        None, description="cpu or cuda[:N]; default: cpu for piper, the tts_infer.yaml device for gpt-sovits."
    )
    worker_id: Optional[str] = Field(None, description="Name in /stats and logs; default host:port.")
    voice_dir: Path = Field(Path("voices"), description="Directory that reference audio paths resolve inside.")
    max_queue_size: int = Field(10, ge=1, le=10000, description="Most requests admitted at once (waiting+running).")
    request_timeout: float = Field(120.0, gt=0, description="Seconds a request may wait plus synthesize.")
    max_text_length: int = Field(1000, ge=1, description="Longest accepted text, in characters.")
    max_audio_seconds: float = Field(
        600.0, gt=0, le=86400, description="Most seconds of audio one request may produce; beyond: 400."
    )
    models_dir: Optional[Path] = Field(
        None, description="Directory that /set_gpt_weights and /set_sovits_weights paths must lie in; default: "
        "the GPT-SoVITS checkout (--gpt-sovits-root), else the directory the worker starts in."
    )
    num_warmup: int = Field(3, ge=0, le=100, description="Warm-up syntheses before /readyz turns ready.")
    drain_timeout: float = Field(30.0, ge=0, description="Seconds SIGTERM waits for admitted requests.")
    log_level: str = Field("info", description="debug, info, warning or error.")
    log_json: bool = Field(True, description="One JSON object per log line.")
    voices: Optional[Path] = Field(
        None, description="Voice catalog (voices.yaml) for the `voice` parameter of /tts; re-read when it changes. "
        "Unset: the voices.yaml next to tts_infer.yaml if there is one, else the default voice only, as api_v2."
    )
    max_loaded_voices: int = Field(3, ge=1, le=64, description="Most catalog voices held at once; least recently "
                                   "used evicted.")
    # batching: several requests in the engine at once (engines that can; the others serve one at a time)
    batching: bool = Field(
        False, description="Serve up to --max-batch requests in the engine at once, advancing together step by step "
        "(engines that batch: synthetic, gpt-sovits); off: one request at a time, as api_v2."
    )
    max_batch: int = Field(
        8, ge=1, le=64, description="With --batching: most requests in the engine at once (the rest wait in the "
        "queue); at most --max-queue-size."
    )
    batch_wait_ms: float = Field(
        5.0, ge=0, le=1000, description="With --batching: milliseconds an idle engine's first request waits for "
        "others to arrive, so they start in one batch (later arrivals join between steps without waiting)."
    )
    vocoder_thread: Optional[bool] = Field(
        None, description="With --batching, gpt-sovits: run SoVITS on a second thread while the batch goes on "
        "decoding (on), or between steps on the engine thread (off). Unset: on with CUDA; off on CPU, where both "
        "stages share the same cores and the thread was measured slower."
    )
    max_reference_clips: int = Field(
        32, ge=1, le=1024, description="gpt-sovits: most reference clips whose features (semantic prompt, "
        "spectrograms, prompt text's phonemes and BERT features) are kept, least recently used evicted, so requests "
        "alternating between clips do not read a clip at every switch; a clip rewritten on disk is read again."
    )
    # piper engine
    piper_voice: Optional[Path] = Field(None, description="Piper .onnx voice; default: the bundled en_US joe voice.")
    piper_deterministic: bool = Field(
        False, description="Zero Piper's noise scales so equal requests give identical audio."
    )
    cpu_threads: int = Field(
        0, ge=0, le=256, description="Piper and GPT-SoVITS on the CPU: inference threads; 0: the engine's default."
    )
    # synthetic engine (benchmarks and load tests only)
    synthetic_base_seconds: float = Field(0.05, ge=0, description="Synthetic engine: fixed seconds per request.")
    synthetic_seconds_per_char: float = Field(0.002, ge=0, description="Synthetic engine: seconds per character.")
    synthetic_sample_rate: int = Field(32000, ge=8000, le=48000, description="Synthetic engine: sample rate.")
    synthetic_voice_load_seconds: float = Field(
        0.0, ge=0, le=600, description="Synthetic engine: seconds a catalog voice takes to load (a model pair's stand-in)."
    )
    synthetic_batch_step_seconds: float = Field(
        0.02, gt=0, le=10, description="Synthetic engine with --batching: seconds of each request's own work one "
        "batched step does (its length alone)."
    )
    synthetic_batch_alpha: float = Field(
        0.3, ge=0, le=1, description="Synthetic engine with --batching: a step of b requests takes "
        "step x b^alpha (0: a batch costs no more than one request; 1: no gain from batching)."
    )
    # gpt-sovits engine
    gpt_sovits_root: Optional[Path] = Field(
        None, description="GPT-SoVITS: a checkout to import from (the worker runs from there, as api_v2 does); "
        "default: an installed distribution."
    )
    # the GPT-SoVITS block of tts_infer.yaml (custom, else v2), for the gpt-sovits engine
    gpt_sovits_config: dict[str, Any] = Field(default_factory=dict, description="tts_infer.yaml block in use.")
    # The seed's keys in tts_infer.yaml. One worker serves one device, so a worker only reads and logs them; the
    # launcher that starts one worker per GPU is what acts on them.
    enable_concurrent_tts: bool = Field(True, description="Seed key: one worker per GPU (logged at start-up).")
    num_gpus: Optional[int] = Field(None, ge=0, description="Seed key: GPUs to use (logged at start-up).")

    @field_validator("voice_dir", "tts_config", "gpt_sovits_root", "piper_voice", "models_dir", "voices")
    @classmethod
    def _absolute(cls, v: Optional[Path]) -> Optional[Path]:
        # Absolute from the start: the gpt-sovits engine may move the working directory to its checkout.
        return v.absolute() if v is not None else None

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: Optional[str]) -> Optional[str]:
        if v is None or v == "":
            return None
        v = v.strip().lower()
        if v == "cpu" or v == "cuda":
            return v
        if v.startswith("cuda:") and v[5:].isdigit():
            return v
        raise ValueError("device must be cpu, cuda or cuda:N")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs = getattr(init_settings, "init_kwargs", {})
        return init_settings, env_settings, _TTSInferYamlSource(settings_cls, init_kwargs), file_secret_settings

    @property
    def name(self) -> str:
        return self.worker_id or f"{socket.gethostname()}:{self.port}"

    @model_validator(mode="after")
    def _batch_fits_the_queue(self) -> "WorkerSettings":
        if self.batching and self.max_batch > self.max_queue_size:
            raise ValueError(f"max_batch ({self.max_batch}) is above max_queue_size ({self.max_queue_size}): a batch "
                             "holds only admitted requests, so raise max_queue_size or lower max_batch")
        return self

    @model_validator(mode="after")
    def _voices_beside_tts_config(self) -> "WorkerSettings":
        if self.voices is None and (beside := self.tts_config.parent / "voices.yaml").is_file():
            self.voices = beside
        return self

    @model_validator(mode="after")
    def _default_models_dir(self) -> "WorkerSettings":
        # Fixed at start-up: the gpt-sovits engine may move the working directory to its checkout later.
        if self.models_dir is None:
            self.models_dir = self.gpt_sovits_root or Path.cwd()
        return self

    def resolved_device(self) -> str:
        """Explicit device wins; gpt-sovits falls back to its yaml block; everything else runs on the CPU."""
        if self.device:
            return self.device
        if self.engine == "gpt-sovits":
            dev = str(self.gpt_sovits_config.get("device", "cuda")).lower()
            return dev if dev else "cuda"
        return "cpu"
