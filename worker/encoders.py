"""int16 mono PCM -> wav / raw / ogg (Vorbis) / aac (ADTS) / mp3 / opus (Ogg/Opus) / flac, whole bodies or per
streamed chunk.

libsndfile (in soundfile's wheel) writes Ogg/Vorbis and ffmpeg's libraries (in PyAV's wheel) write AAC, MP3 (LAME),
Opus and FLAC, so no ffmpeg binary or subprocess is involved. Opus fixes its rate: its encoder resamples to 48 kHz. Both codecs are fed in blocks of `BLOCK_SAMPLES`: libsndfile's Vorbis
writer segfaults on one `write` of about 2.1 M samples or more (65 s at 32 kHz), which took the worker down with it.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

# Samples handed to a codec per call: far below the size that crashes libsndfile, large enough to cost nothing.
BLOCK_SAMPLES = 1 << 16

CONTENT_TYPES = {"wav": "audio/wav", "raw": "audio/raw", "ogg": "audio/ogg", "aac": "audio/aac",
                 "mp3": "audio/mpeg", "opus": "audio/opus", "flac": "audio/flac"}
# media_type -> (PyAV container format, encoder, the rate it fixes or None for the input's)
PYAV_FORMATS: dict[str, tuple[str, str, int | None]] = {
    "aac": ("adts", "aac", None),
    "mp3": ("mp3", "libmp3lame", None),
    "opus": ("ogg", "libopus", 48000),
    "flac": ("flac", "flac", None),
}


def encoded_rate(media_type: str, sample_rate: int) -> int:
    """The sample rate of the encoded audio: the input's, unless the format fixes one (opus)."""
    fixed = PYAV_FORMATS.get(media_type, ("", "", None))[2]
    return fixed or sample_rate


def wav_header(sample_rate: int, data_bytes: int = 0) -> bytes:
    """The 44-byte PCM_16 mono RIFF header; data size 0 is what api_v2 sends first when streaming."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )


def _ogg(pcm: np.ndarray, sample_rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    with sf.SoundFile(buf, mode="w", samplerate=sample_rate, channels=1, format="OGG", subtype="VORBIS") as f:
        for start in range(0, len(pcm), BLOCK_SAMPLES):
            f.write(pcm[start : start + BLOCK_SAMPLES])
    return buf.getvalue()


def _pyav(pcm: np.ndarray, sample_rate: int, media_type: str) -> bytes:
    import av

    container_format, codec, fixed_rate = PYAV_FORMATS[media_type]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_format) as container:
        # PyAV converts each frame to the encoder's sample format and rate as it encodes.
        stream = container.add_stream(codec, rate=fixed_rate or sample_rate)
        assert isinstance(stream, av.AudioStream)  # an audio encoder's stream (the codec name decides the type)
        stream.layout = "mono"
        for start in range(0, len(pcm), BLOCK_SAMPLES):
            block = np.ascontiguousarray(pcm[start : start + BLOCK_SAMPLES])
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def encode(pcm: np.ndarray, sample_rate: int, media_type: str) -> bytes:
    """A whole, self-contained body."""
    pcm = np.ascontiguousarray(pcm, dtype=np.int16)
    if media_type == "wav":
        data = pcm.tobytes()
        return wav_header(sample_rate, len(data)) + data
    if media_type == "raw":
        return pcm.tobytes()
    if media_type == "ogg":
        return _ogg(pcm, sample_rate)
    if media_type in PYAV_FORMATS:
        return _pyav(pcm, sample_rate, media_type)
    raise ValueError(f"media_type: {media_type} is not supported")


def encode_chunk(pcm: np.ndarray, sample_rate: int, media_type: str) -> bytes:
    """One streamed chunk: wav and raw send bare PCM (the wav header went first); the other formats encode each
    chunk on its own, as api_v2 does for ogg and aac, so every chunk decodes by itself (chained-Ogg, ADTS and MP3
    decoders read the sequence as one stream; a FLAC stream is a sequence of complete FLAC files)."""
    if media_type in ("wav", "raw"):
        return np.ascontiguousarray(pcm, dtype=np.int16).tobytes()
    return encode(pcm, sample_rate, media_type)


class Resampler:
    """int16 mono from one rate to another with FFmpeg's libswresample (in PyAV's wheel), stateful across a stream's
    chunks, so chunk borders leave no clicks. Fixed-rate APIs (OpenAI's pcm is 24 kHz) use it."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        import av

        self.rate_in, self.rate_out = rate_in, rate_out
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate_out)
        self._pts = 0

    def feed(self, pcm: np.ndarray) -> np.ndarray:
        if self.rate_in == self.rate_out:
            return pcm
        import av

        block = np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
        frame.sample_rate = self.rate_in
        frame.pts = self._pts
        self._pts += block.shape[1]
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        if self.rate_in == self.rate_out:
            return np.zeros(0, dtype=np.int16)
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[Any]) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        return np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, dtype=np.int16)


class _Sink(io.RawIOBase):
    """A write-only, unseekable file for a muxer: what it writes is taken away as it comes."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


class StreamEncoder:
    """One encoder for a whole stream, whose bytes are handed on as they are made: their concatenation is one valid
    file (what OpenAI's streamed formats are), unlike `encode_chunk`'s file per chunk (api_v2's). The muxer writes
    to an unseekable sink, so it never goes back to patch a header."""

    def __init__(self, media_type: str, sample_rate: int) -> None:
        import av

        container_format, codec, fixed_rate = PYAV_FORMATS[media_type]
        self._sink = _Sink()
        self._container = av.open(self._sink, mode="w", format=container_format)
        stream = self._container.add_stream(codec, rate=fixed_rate or sample_rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        self._stream = stream
        self._rate = sample_rate
        self._pts = 0

    def feed(self, pcm: np.ndarray) -> bytes:
        import av

        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        for start in range(0, len(pcm), BLOCK_SAMPLES):
            block = pcm[start : start + BLOCK_SAMPLES].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate = self._rate
            frame.pts = self._pts
            self._pts += block.shape[1]
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._sink.take()

    def close(self) -> bytes:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()
