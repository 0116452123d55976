"""A GPT-SoVITS client script written against the original api_v2 works unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.audio import decode, rms

pytestmark = pytest.mark.process

CLIENT = Path(__file__).parent / "clients" / "gpt_sovits_client.py"


def test_original_client_script(piper_worker, tmp_path):
    done = subprocess.run(
        [sys.executable, str(CLIENT), piper_worker.url, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ref_audio_path is required"
    for name in ("get.wav", "post.wav"):
        pcm, rate = decode((tmp_path / name).read_bytes(), "wav", 0)
        assert rate == 22050 and len(pcm) > rate and rms(pcm) > 300
    streamed = (tmp_path / "stream.wav").read_bytes()
    assert streamed[:4] == b"RIFF" and len(streamed) > 44 + 22050
