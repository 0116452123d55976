"""`tts-cluster up`: a supervised local cluster; a killed worker comes back; the seed's yaml keys are honoured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from support.up import busy, start_up
from support.wait import eventually

# A local cluster restarting a worker refuses connections for a moment: that counts as not yet.
RESTARTING = (httpx.HTTPError,)


@pytest.mark.process
@pytest.mark.slow
def test_up_serves_restarts_a_dead_worker_and_stops_cleanly(tmp_path, voice_dir):
    proc, url = start_up(tmp_path, "--workers", "2", "--engine", "synthetic", "--voice-dir", str(voice_dir))
    try:
        stats = eventually(lambda: (s := httpx.get(f"{url}/concurrent_stats").json())["mode"] == "concurrent" and s, ignore=RESTARTING)
        assert stats["gpu_count"] == 2
        r = httpx.post(f"{url}/tts", json={"text": "Hello.", "text_lang": "en", "ref_audio_path": "reference.wav",
                                            "prompt_lang": "en"}, timeout=30)
        assert r.status_code == 200
        victim = stats["workers"][0]["url"]
        pid = httpx.get(f"{victim}/stats").json()["pid"]
        os.kill(pid, signal.SIGKILL)
        # the supervisor starts it again on the same port; the router re-admits it
        eventually(lambda: httpx.get(f"{victim}/stats", timeout=1).json()["pid"] != pid, ignore=RESTARTING)
        eventually(lambda: httpx.get(f"{url}/concurrent_stats").json()["mode"] == "concurrent", ignore=RESTARTING)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
    log = (tmp_path / "up.log").read_text()
    assert "restarting" in log
    assert not busy(int(url.rsplit(":", 1)[1]))


@pytest.mark.process
def test_up_falls_back_to_one_worker_when_the_yaml_says_so(tmp_path, voice_dir):
    yaml = tmp_path / "tts_infer.yaml"
    yaml.write_text("enable_concurrent_tts: false\nnum_gpus: 4\n")
    # ... and a voices.yaml beside it is every worker's catalog
    (tmp_path / "voices.yaml").write_text("voices:\n  - name: narrator\n    synthetic: {tone_hz: 440}\n")
    proc, url = start_up(tmp_path, "--engine", "synthetic", "-c", str(yaml), "--voice-dir", str(voice_dir))
    try:
        stats = httpx.get(f"{url}/concurrent_stats").json()
        assert stats["mode"] == "single" and stats["gpu_count"] == 1
        r = httpx.post(f"{url}/tts", json={"text": "Hello.", "text_lang": "en", "voice": "narrator"}, timeout=30)
        assert r.status_code == 200, r.text
        assert httpx.post(f"{url}/tts", json={"text": "Hi.", "text_lang": "en", "voice": "x"}).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    assert "enable_concurrent_tts is false" in (tmp_path / "up.log").read_text()


@pytest.mark.process
def test_up_refuses_a_bad_catalog_before_starting_anything(tmp_path):
    bad = tmp_path / "voices.yaml"
    bad.write_text("voices:\n  - name: ../escape\n    synthetic: {}\n")
    done = subprocess.run([sys.executable, "-m", "tts_cli", "up", "--engine", "synthetic", "--voices", str(bad)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "voice '../escape': name" in done.stderr + done.stdout
    assert "worker(s)" not in done.stderr + done.stdout  # no "starting N worker(s)"


@pytest.mark.unit
def test_worker_plan_follows_gpus_and_the_seed_keys(monkeypatch):
    from tts_cli.up import plan_workers

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert plan_workers(None, "piper", {}).count == 4
    assert plan_workers(None, "piper", {}).gpus == ["0", "1", "2", "3"]
    assert plan_workers(None, "piper", {"num_gpus": 2}).count == 2
    short = plan_workers(None, "piper", {"num_gpus": 8})
    assert short.count == 4 and "short" in short.reason
    assert plan_workers(None, "piper", {"enable_concurrent_tts": False}).count == 1
    assert plan_workers(3, "piper", {}).count == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cpu = plan_workers(None, "piper", {})
    assert cpu.count == 2 and cpu.gpus == []


@pytest.mark.process
def test_up_logs_requests_not_polls(tmp_path, voice_dir):
    """`make demo`'s output: a line per /tts from the router and from the worker, none per /stats poll; and
    `--allow-unauthenticated-admin` opening the admin routes of all three processes."""
    proc, url = start_up(tmp_path, "--workers", "2", "--engine", "synthetic", "--voice-dir", str(voice_dir),
                         "--allow-unauthenticated-admin")
    try:
        # the opt-in reaches the router and both workers: an api_v2 client's admin call, with no token
        switch = httpx.get(f"{url}/set_refer_audio", params={"refer_audio_path": "reference.wav"}, timeout=30)
        assert switch.status_code == 200 and len(switch.json()["workers"]) == 2, switch.text
        time.sleep(3)  # about 30 polls of each worker
        r = httpx.post(f"{url}/tts", json={"text": "Hello.", "text_lang": "en", "ref_audio_path": "reference.wav",
                                            "prompt_lang": "en"}, headers={"x-request-id": "quiet-logs-1"}, timeout=30)
        assert r.status_code == 200
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    lines = (tmp_path / "up.log").read_text().splitlines()
    assert not [line for line in lines if "/stats" in line or "/readyz" in line or "HTTP Request" in line]
    assert len([line for line in lines if "quiet-logs-1" in line and "tts request" in line]) == 2
    assert len([line for line in lines if "open to unauthenticated callers" in line]) == 3
