"""Engine registry: each engine's module is imported only when chosen (piper's is GPL and optional; GPT-SoVITS's
brings torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Engine, EngineLoadError

if TYPE_CHECKING:
    from tts_worker.settings import WorkerSettings


def create_engine(settings: "WorkerSettings") -> Engine:
    engine = _engine(settings)
    engine.loaded.limit = settings.max_loaded_voices
    return engine


def _engine(settings: "WorkerSettings") -> Engine:
    device = settings.resolved_device()
    if settings.engine == "piper":
        try:
            from .piper_engine import PiperEngine
        except ImportError as exc:
            raise EngineLoadError(
                f"engine piper needs the optional extra: pip install 'tts-cluster[piper]' ({exc})"
            ) from exc
        return PiperEngine(
            settings.piper_voice,
            device=device,
            deterministic=settings.piper_deterministic,
            cpu_threads=settings.cpu_threads,
            models_dir=settings.models_dir,
        )
    if settings.engine == "synthetic":
        from .synthetic import SyntheticEngine

        return SyntheticEngine(
            base_seconds=settings.synthetic_base_seconds,
            seconds_per_char=settings.synthetic_seconds_per_char,
            sample_rate=settings.synthetic_sample_rate,
            device=device,
            voice_load_seconds=settings.synthetic_voice_load_seconds,
            models_dir=settings.models_dir,
            max_batch=settings.max_batch if settings.batching else 1,
            batch_step_seconds=settings.synthetic_batch_step_seconds,
            batch_alpha=settings.synthetic_batch_alpha,
        )
    if settings.engine == "gpt-sovits":
        from .gpt_sovits import GPTSoVITSEngine

        return GPTSoVITSEngine(
            settings.gpt_sovits_config,
            device=device,
            root=settings.gpt_sovits_root,
            warmup_reference=settings.voice_dir / "reference.wav",
            cpu_threads=settings.cpu_threads,
            models_dir=settings.models_dir,
            max_batch=settings.max_batch if settings.batching else 1,
            vocoder_thread=settings.vocoder_thread,
            max_reference_clips=settings.max_reference_clips,
        )
    raise EngineLoadError(f"engine {settings.engine!r} is not available in this build")
