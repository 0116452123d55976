"""Reference clips for a GPT-SoVITS checkout where torchaudio cannot read them.

Upstream's `TTS` reads every reference clip with `torchaudio.load`. From torchaudio 2.9 on, `load` decodes through
torchcodec (and FFmpeg's shared libraries), which GPT-SoVITS's requirements do not bring; torch 2.13 has no older
torchaudio. Without torchcodec every request would fail at its clip, so the worker then reads clips with soundfile
(libsndfile: WAV, FLAC, OGG, MP3), returning what `torchaudio.load` returns.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any, Optional

log = logging.getLogger("tts_worker.gpt_sovits")


def load_with_soundfile(uri: Any, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
                        channels_first: bool = True, format: Optional[str] = None, buffer_size: int = 4096,
                        backend: Optional[str] = None) -> tuple[Any, int]:
    """`torchaudio.load`'s answer, read by soundfile: float32 in [-1, 1], [channels, frames] (or transposed)."""
    import soundfile as sf
    import torch

    stop = None if num_frames < 0 else frame_offset + num_frames
    audio, rate = sf.read(uri, start=frame_offset, stop=stop, dtype="float32", always_2d=True)
    samples = torch.from_numpy(audio.T.copy() if channels_first else audio.copy())
    return samples, int(rate)


def _torchcodec_works() -> bool:
    try:
        importlib.import_module("torchcodec.decoders")  # (which loads FFmpeg's libraries too)
    except Exception:  # noqa: BLE001 - missing, or FFmpeg's libraries missing: either way it cannot decode
        return False
    return True


def read_clips_without_torchcodec() -> bool:
    """If the imported torchaudio decodes through torchcodec and torchcodec cannot work here, make `load` read with
    soundfile instead (True when it did). The worker process is the engine's own, so the change is its alone."""
    torchaudio = sys.modules.get("torchaudio")
    if torchaudio is None or not hasattr(torchaudio, "load_with_torchcodec") or _torchcodec_works():
        return False
    setattr(torchaudio, "load", load_with_soundfile)  # noqa: B010 - upstream looks it up at each call
    log.warning("torchaudio %s reads audio through torchcodec, which cannot load here: reference clips are read "
                "with soundfile", getattr(torchaudio, "__version__", "?"))
    return True
