"""How per-segment audio becomes the chunks of each streaming mode (as GPT-SoVITS's TTS.run shapes them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tts_common.schemas import TTSRequest
from tts_worker.engines.base import Cancelled, CancelToken, StreamMode, SynthesisParams, shape_stream

pytestmark = pytest.mark.unit

RATE = 1000


def params(mode: StreamMode, **kw: object) -> SynthesisParams:
    req = TTSRequest(text="x", text_lang="en", prompt_lang="en", ref_audio_path="r.wav", **kw)
    return SynthesisParams(req, mode, Path("r.wav"))


def segments() -> list[np.ndarray]:
    return [np.full(500, 1, np.int16), np.full(300, 2, np.int16)]


def test_mode_0_joins_segments_with_the_fragment_interval():
    out = list(shape_stream(segments(), params(StreamMode.OFF, fragment_interval=0.1), RATE, CancelToken()))
    assert len(out) == 1
    assert out[0].tolist() == [1] * 500 + [0] * 100 + [2] * 300


def test_mode_1_yields_each_segment_followed_by_the_interval():
    out = list(shape_stream(segments(), params(StreamMode.SEGMENT, fragment_interval=0.2), RATE, CancelToken()))
    assert [c.tolist() for c in out] == [[1] * 500 + [0] * 200, [2] * 300 + [0] * 200]


@pytest.mark.parametrize("mode", [StreamMode.TOKEN, StreamMode.FIXED])
def test_modes_2_and_3_cut_min_chunk_length_tokens(mode):
    out = list(shape_stream(segments(), params(mode, min_chunk_length=5), RATE, CancelToken()))
    # 5 tokens x 40 ms = 200 samples at 1 kHz
    assert [len(c) for c in out] == [200, 200, 100, 200, 100]
    assert np.concatenate(out).tolist() == [1] * 500 + [2] * 300


def test_cancel_stops_between_segments():
    token = CancelToken()

    def gen():
        yield np.ones(10, np.int16)
        token.cancel()
        yield np.ones(10, np.int16)

    out = shape_stream(gen(), params(StreamMode.SEGMENT), RATE, token)
    next(out)
    with pytest.raises(Cancelled):
        next(out)
