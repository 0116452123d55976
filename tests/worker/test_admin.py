"""Admin routes (/control, /set_*): 403 unless a token is configured and sent; engines that cannot switch say so."""

from __future__ import annotations

import time

import httpx
import pytest

from support.params import ADMIN_TOKEN

pytestmark = pytest.mark.process

ADMIN_ROUTES = [
    ("/control", {"command": "exit"}),
    ("/set_refer_audio", {"refer_audio_path": "reference.wav"}),
    ("/set_gpt_weights", {"weights_path": "x.ckpt"}),
    ("/set_sovits_weights", {"weights_path": "x.pth"}),
]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.parametrize("route,params", ADMIN_ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}, {"Authorization": f"Basic {ADMIN_TOKEN}"}],
)
def test_admin_routes_need_the_token(piper_worker, route, params, headers):
    r = httpx.get(f"{piper_worker.url}{route}", params=params, headers=headers)
    assert r.status_code == 403
    assert "admin token" in r.json()["message"]
    assert httpx.get(f"{piper_worker.url}/healthz").status_code == 200  # and /control?command=exit did nothing


@pytest.mark.parametrize("route,params", ADMIN_ROUTES)
def test_admin_routes_are_off_without_a_configured_token(spawn_worker, route, params):
    worker = spawn_worker()
    r = httpx.get(f"{worker.url}{route}", params=params, headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403
    assert "TTSC_ADMIN_TOKEN" in r.json()["message"]


def test_piper_cannot_switch_weights(piper_worker):
    for kind in ("gpt", "sovits"):
        r = httpx.get(f"{piper_worker.url}/set_{kind}_weights", params={"weights_path": "w.bin"}, headers=AUTH)
        assert r.status_code == 400
        assert r.json()["message"] == f"change {kind} weight failed"
        assert "cannot switch" in r.json()["Exception"]
        r = httpx.get(f"{piper_worker.url}/set_{kind}_weights", headers=AUTH)
        assert r.status_code == 400 and r.json()["message"] == f"{kind} weight path is required"


def test_set_refer_audio(piper_worker):
    r = httpx.get(f"{piper_worker.url}/set_refer_audio", params={"refer_audio_path": "speakers/alice.wav"}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"message": "success"}


def test_control_needs_a_known_command(piper_worker):
    r = httpx.get(f"{piper_worker.url}/control", headers=AUTH)
    assert r.status_code == 400 and r.json()["message"] == "command is required"
    r = httpx.get(f"{piper_worker.url}/control", params={"command": "reboot"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["field"] == "command"


def test_weight_switch_waits_for_the_running_request(spawn_worker, tmp_path):
    worker = spawn_worker("--synthetic-base-seconds", "1.0", "--models-dir", str(tmp_path),
                          env={"TTSC_ADMIN_TOKEN": ADMIN_TOKEN})
    weights = tmp_path / "s1.ckpt"
    weights.write_bytes(b"weights")
    with httpx.Client(timeout=30) as client:
        r = client.get(f"{worker.url}/set_gpt_weights", params={"weights_path": str(tmp_path / "nope")}, headers=AUTH)
        assert r.status_code == 400 and r.json()["message"] == "change gpt weight failed"

        import threading

        results: dict[str, httpx.Response] = {}
        t = threading.Thread(
            target=lambda: results.setdefault(
                "tts",
                httpx.post(
                    f"{worker.url}/tts",
                    json={"text": "Hi.", "text_lang": "en", "ref_audio_path": "reference.wav", "prompt_lang": "en"},
                    timeout=30,
                ),
            )
        )
        t.start()
        for _ in range(100):
            if client.get(f"{worker.url}/stats").json()["in_flight"] == 1:
                break
            time.sleep(0.02)
        r = client.get(f"{worker.url}/set_gpt_weights", params={"weights_path": str(weights)}, headers=AUTH)
        # The switch ran after the synthesis: by the time it answered, that request had been processed.
        assert r.status_code == 200 and r.json() == {"message": "success"}
        assert client.get(f"{worker.url}/stats").json()["processed"] == 1
        t.join()
    assert results["tts"].status_code == 200


def test_control_exit_drains_and_exits_zero(spawn_worker):
    worker = spawn_worker(env={"TTSC_ADMIN_TOKEN": ADMIN_TOKEN})
    r = httpx.get(f"{worker.url}/control", params={"command": "exit"}, headers=AUTH)
    assert r.status_code == 200
    assert worker.proc.wait(30) == 0


def test_control_restart_comes_back_as_a_new_process_image(spawn_worker):
    worker = spawn_worker(env={"TTSC_ADMIN_TOKEN": ADMIN_TOKEN})
    before = httpx.get(f"{worker.url}/stats").json()["uptime_seconds"]
    time.sleep(0.5)
    r = httpx.get(f"{worker.url}/control", params={"command": "restart"}, headers=AUTH)
    assert r.status_code == 200
    for _ in range(300):
        try:
            stats = httpx.get(f"{worker.url}/stats", timeout=1).json()
            if stats["uptime_seconds"] < before + 0.5 and stats["processed"] == 0:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    assert stats["uptime_seconds"] < before + 0.5  # re-executed: a fresh uptime, same pid (exec keeps it)
    assert stats["pid"] == worker.proc.pid
    assert worker.proc.poll() is None
