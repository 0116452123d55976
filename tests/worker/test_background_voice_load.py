"""`POST /voices/{name}/load` on a real synthetic worker: the router's background copy of a voice. It answers at once,
is priced in the queued work until loaded, evicts no protected voice, and sits behind the admin token where there is
one; requests that wait for their own voice's load are counted, and those the router marked as held elsewhere apart."""

from __future__ import annotations

import httpx
import pytest
import yaml

from support.params import tts_params
from support.wait import eventually
from tts_cli.processes import start_worker

pytestmark = pytest.mark.process

CATALOG = {"voices": [{"name": n, "synthetic": {"tone_hz": 200 + 300 * i}} for i, n in enumerate(
    ["low", "mid", "high"])]}


@pytest.fixture
def catalog_path(tmp_path):
    path = tmp_path / "voices.yaml"
    path.write_text(yaml.safe_dump(CATALOG))
    return path


def stats(url: str) -> dict[str, object]:
    return httpx.get(f"{url}/stats", timeout=10).json()


def test_a_background_load_is_answered_at_once_priced_until_loaded_and_evicts_no_protected_voice(
        catalog_path, voice_dir, logs_dir):
    worker = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--voices", str(catalog_path),
                           "--max-loaded-voices", "2", "--synthetic-voice-load-seconds", "1.0"], logs_dir)
    try:
        url = worker.url
        r = httpx.post(f"{url}/voices/low/load", timeout=10)
        assert r.status_code == 202, r.text
        assert r.elapsed.total_seconds() < 0.9  # not the load's second: nobody waits for it
        s = stats(url)
        # Asked for and not loaded yet: listed, and its load is in the work the router prices this worker with.
        assert s["voices_replicating"] == ["low"] and s["queued_work_seconds"] >= 0.5, s
        assert httpx.post(f"{url}/voices/low/load", timeout=10).status_code == 200  # on its way already
        s = eventually(lambda: (x := stats(url))["loaded_voices"] == ["low"] and x)
        assert s["voices_replicating"] == [] and s["voice_background_loads"] == 1 and s["queued_work_seconds"] == 0
        assert httpx.post(f"{url}/voices/low/load", timeout=10).status_code == 200  # held
        assert httpx.post(f"{url}/voices/nobody/load", timeout=10).status_code == 404

        # A request for a held voice waits for no load; one for a voice not held here does, and the router's mark
        # that another worker held it is counted apart.
        assert httpx.post(f"{url}/tts", json=tts_params(text="A tone.", media_type="raw", voice="low"),
                          timeout=30).status_code == 200
        assert stats(url)["voice_own_load_waits"] == 0
        r = httpx.post(f"{url}/tts", json=tts_params(text="A tone.", media_type="raw", voice="mid"), timeout=30,
                       headers={"x-ttsc-voice-held-elsewhere": "1"})
        assert r.status_code == 200
        s = stats(url)
        assert (s["voice_own_load_waits"], s["voice_load_waits_held_elsewhere"]) == (1, 1), s
        assert s["loaded_voices"] == ["low", "mid"]

        # Both slots hold voices the router says only this worker has: a copy of high must evict neither.
        r = httpx.post(f"{url}/voices/high/load", params=[("protect", "low"), ("protect", "mid")], timeout=10)
        assert r.status_code == 202
        eventually(lambda: stats(url)["voices_replicating"] == [])
        s = stats(url)
        assert s["loaded_voices"] == ["low", "mid"] and s["voice_background_loads"] == 1, s
        # Protecting only mid, low (least recently used) makes room.
        assert httpx.post(f"{url}/voices/high/load", params={"protect": "mid"}, timeout=10).status_code == 202
        s = eventually(lambda: "high" in (x := stats(url))["loaded_voices"] and x)
        assert s["loaded_voices"] == ["mid", "high"] and s["voice_background_loads"] == 2
    finally:
        worker.stop()


def test_with_an_admin_token_a_background_load_needs_it(catalog_path, voice_dir, logs_dir):
    worker = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--voices", str(catalog_path)],
                          logs_dir, env={"TTSC_ADMIN_TOKEN": "s3cret"})
    try:
        assert httpx.post(f"{worker.url}/voices/low/load", timeout=10).status_code == 403
        r = httpx.post(f"{worker.url}/voices/low/load", headers={"authorization": "Bearer wrong"}, timeout=10)
        assert r.status_code == 403
        r = httpx.post(f"{worker.url}/voices/low/load", headers={"authorization": "Bearer s3cret"}, timeout=10)
        assert r.status_code == 202
    finally:
        worker.stop()
