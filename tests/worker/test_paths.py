"""Client paths (reference audio) never escape the voice directory."""

from __future__ import annotations

import httpx
import pytest

from support.params import ADMIN_TOKEN, tts_params

pytestmark = pytest.mark.process

ESCAPES = ["../secret.wav", "speakers/../../secret.wav", "/etc/passwd", "escape.wav", "ref\x00.wav", "missing.wav"]


@pytest.mark.parametrize("path", ESCAPES)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_ref_audio_path_stays_inside(piper_worker, path, method):
    params = tts_params(ref_audio_path=path)
    if method == "GET":
        r = httpx.get(f"{piper_worker.url}/tts", params=params)
    else:
        r = httpx.post(f"{piper_worker.url}/tts", json=params)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "ref_audio_path"
    assert r.json()["message"].startswith("ref_audio_path: ")


# A missing aux clip is skipped, as api_v2's pipeline skips it (tests/system/test_api_v2_fidelity.py); the rest of
# ESCAPES leave the voice directory or cannot name a file, and stay refused.
@pytest.mark.parametrize("path", [p for p in ESCAPES if p != "missing.wav"])
def test_aux_ref_audio_paths_stay_inside(piper_worker, path):
    r = httpx.post(
        f"{piper_worker.url}/tts", json=tts_params(aux_ref_audio_paths=["speakers/alice.wav", path])
    )
    assert r.status_code == 400
    assert r.json()["field"] == "aux_ref_audio_paths"


def test_aux_paths_repeat_in_a_query(piper_worker):
    r = httpx.get(
        f"{piper_worker.url}/tts",
        params=[*tts_params().items(), ("aux_ref_audio_paths", "speakers/alice.wav"), ("aux_ref_audio_paths", "../x")],
    )
    assert r.status_code == 400 and r.json()["field"] == "aux_ref_audio_paths"


def test_paths_inside_are_accepted(piper_worker, voice_dir):
    for path in ["speakers/alice.wav", str(voice_dir / "reference.wav"), "inside-link.wav", "./speakers/../reference.wav"]:
        r = httpx.post(f"{piper_worker.url}/tts", json=tts_params(ref_audio_path=path, aux_ref_audio_paths=[path]))
        assert r.status_code == 200, (path, r.text)


@pytest.mark.parametrize("path", ESCAPES)
def test_set_refer_audio_stays_inside(piper_worker, path):
    r = httpx.get(
        f"{piper_worker.url}/set_refer_audio",
        params={"refer_audio_path": path},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 400
    assert r.json()["message"] == "set refer audio failed"
    assert r.json()["Exception"].startswith("refer_audio_path: ")
