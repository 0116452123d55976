"""A gpt-sovits engine in the test process, on the generated weights, and requests for it."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tts_common.schemas import TTSRequest

ONE_SENTENCE = "The birch canoe slid on the smooth planks."


@contextmanager
def loaded_engine(weights: Path, voices: Path, **settings: Any) -> Iterator[Any]:
    """The batching-capable engine of weight set w0, with w0's clip as `one.wav` in `voices`; what importing
    GPT-SoVITS adds to sys.path is taken out again after."""
    from tts_worker.engines import create_engine
    from tts_worker.settings import WorkerSettings

    saved_path, saved_nltk = list(sys.path), os.environ.get("NLTK_DATA")
    os.environ["NLTK_DATA"] = str(weights / "nltk_data")
    shutil.copy(weights / "w0" / "ref.wav", voices / "one.wav")
    fields: dict[str, Any] = {"engine": "gpt-sovits", "tts_config": weights / "w0" / "tts_infer.yaml",
                              "device": "cpu", "batching": True, "max_batch": 4, "max_queue_size": 8,
                              "voice_dir": voices, "num_warmup": 0, "models_dir": weights, **settings}
    eng = create_engine(WorkerSettings(**fields))
    eng.load()
    try:
        yield eng
    finally:
        sys.path[:] = saved_path
        if saved_nltk is None:
            os.environ.pop("NLTK_DATA", None)
        else:
            os.environ["NLTK_DATA"] = saved_nltk


def request(eng: Any, voices: Path, text: str, **extra: Any) -> Any:
    """Validated parameters as the worker's route makes them: greedy, seeded, raw audio, clip `one.wav`."""
    from tts_worker.validation import check_request

    fields: dict[str, Any] = {"text": text, "text_lang": "en", "ref_audio_path": "one.wav", "prompt_text": "a test",
                              "prompt_lang": "en", "top_k": 1, "seed": 42, "media_type": "raw",
                              "text_split_method": "cut5", **extra}
    return check_request(TTSRequest(**fields), eng, voices, 1000, 60.0, None)


def backwards_clip(voices: Path, name: str) -> Path:
    """Another reference clip in `voices`: `one.wav` played backwards (as long, so as valid, and another voice)."""
    import soundfile as sf

    audio, rate = sf.read(voices / "one.wav", dtype="float32")
    path = voices / name
    sf.write(path, audio[::-1].copy(), rate)
    return path
