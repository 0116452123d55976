"""Reference clips where torchaudio (2.9 and later) would decode through a torchcodec that cannot load: the worker
reads them with soundfile, as torchaudio.load returns them."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch", reason="the gpt-sovits engine needs torch (make setup-gpt-sovits)")

from tts_worker.engines.gpt_sovits import upstream as torchaudio_compat  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture
def stereo(tmp_path: Path) -> tuple[Path, np.ndarray]:
    audio = (np.random.default_rng(0).uniform(-0.9, 0.9, (3000, 2))).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, audio, 32000, subtype="FLOAT")
    return path, audio


def test_a_clip_comes_back_as_torchaudio_load_gives_it(stereo: tuple[Path, np.ndarray]) -> None:
    path, audio = stereo
    samples, rate = torchaudio_compat.load_with_soundfile(str(path))
    assert rate == 32000 and tuple(samples.shape) == (2, 3000) and str(samples.dtype) == "torch.float32"
    assert np.array_equal(samples.numpy(), audio.T)
    part, _ = torchaudio_compat.load_with_soundfile(path, frame_offset=100, num_frames=50, channels_first=False)
    assert np.array_equal(part.numpy(), audio[100:150])


def test_load_is_replaced_only_where_torchcodec_would_decode_and_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # importing it fails, as where it is not installed
    monkeypatch.delitem(sys.modules, "torchaudio", raising=False)
    assert torchaudio_compat.read_clips_without_torchcodec() is False  # no torchaudio imported: nothing to do

    def upstream_load(*args: object, **kwargs: object) -> None:
        raise ImportError("TorchCodec is required for load_with_torchcodec")

    older = types.ModuleType("torchaudio")  # before 2.9: its own backends, no load_with_torchcodec
    older.load = upstream_load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchaudio", older)
    assert torchaudio_compat.read_clips_without_torchcodec() is False and older.load is upstream_load  # type: ignore[attr-defined]

    newer = types.ModuleType("torchaudio")
    newer.load, newer.load_with_torchcodec = upstream_load, upstream_load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchaudio", newer)
    assert torchaudio_compat.read_clips_without_torchcodec() is True
    assert newer.load is torchaudio_compat.load_with_soundfile  # type: ignore[attr-defined]
