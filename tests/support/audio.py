"""Decoding helpers for the tests: every media type back to int16 samples."""

from __future__ import annotations

import io
import struct

import numpy as np


def decode(data: bytes, media_type: str, sample_rate: int) -> tuple[np.ndarray, int]:
    if media_type == "raw":
        return np.frombuffer(data, dtype="<i2"), sample_rate
    if media_type == "wav":
        import soundfile as sf

        pcm, rate = sf.read(io.BytesIO(data), dtype="int16")
        return pcm, rate
    import av

    with av.open(io.BytesIO(data)) as container:
        rate = container.streams.audio[0].sample_rate
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    pcm = np.concatenate(frames)
    if pcm.dtype.kind == "f":
        pcm = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
    return pcm.astype(np.int16), rate


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def parse_wav_header(header: bytes) -> dict[str, int]:
    riff, size, wave, fmt, fmt_len, pcm, channels, rate, byte_rate, align, bits, data, data_size = struct.unpack(
        "<4sI4s4sIHHIIHH4sI", header
    )
    assert (riff, wave, fmt, data) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    return {"format": pcm, "channels": channels, "rate": rate, "bits": bits, "data_size": data_size}
