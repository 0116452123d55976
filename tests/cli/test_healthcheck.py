"""`tts-cluster healthcheck` (the images' HEALTHCHECK): which URL it probes for the server a process runs. The
in-container run, healthy and unhealthy, is in tests/images/test_images.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tts_cli.healthcheck import health_url as health_url_by
from tts_cli.healthcheck import server_argv
from tts_cli.main import build_parser


def health_url(argv: list[str]) -> str:
    return health_url_by(argv, build_parser)


@pytest.mark.unit
@pytest.mark.parametrize(("cmdline", "expected"), [
    (["/opt/venv/bin/python3", "/opt/venv/bin/tts-cluster", "router", "--port", "1"], ["router", "--port", "1"]),
    (["tts-cluster", "worker"], ["worker"]),
    (["python3", "-m", "tts_cli", "operator"], ["operator"]),
    (["router", "--port", "2"], ["router", "--port", "2"]),
    (["/bin/sh", "-c", "sleep 1"], None),
    (["tts-cluster", "healthcheck"], None),
    (["python3", "router"], None),  # a script called router, not ours
])
def test_the_server_part_of_a_command_line(cmdline, expected):
    assert server_argv(cmdline) == expected


@pytest.mark.unit
def test_the_port_comes_from_the_flag_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv("TTSC_ROUTER_PORT", raising=False)
    assert health_url(["router", "--worker", "http://w:1"]) == "http://127.0.0.1:9880/healthz"
    assert health_url(["router", "--port", "19883", "--worker", "http://w:1"]) == "http://127.0.0.1:19883/healthz"
    monkeypatch.setenv("TTSC_ROUTER_PORT", "19884")
    assert health_url(["router", "--worker", "http://w:1"]) == "http://127.0.0.1:19884/healthz"
    assert health_url(["router", "-p", "19885", "--worker", "http://w:1"]) == "http://127.0.0.1:19885/healthz"


@pytest.mark.unit
def test_the_bind_address_decides_the_host():
    assert health_url(["worker", "--bind-addr", "0.0.0.0", "--port", "9"]) == "http://127.0.0.1:9/healthz"
    assert health_url(["worker", "--bind-addr", "10.1.2.3", "--port", "9"]) == "http://10.1.2.3:9/healthz"
    assert health_url(["worker", "--bind-addr", "::", "--port", "9"]) == "http://[::1]:9/healthz"
    assert health_url(["worker", "--bind-addr", "fd00::1", "--port", "9"]) == "http://[fd00::1]:9/healthz"


@pytest.mark.unit
def test_the_operator_is_asked_on_its_liveness_endpoint():
    assert health_url(["operator"]) == "http://127.0.0.1:8080/healthz"
    assert health_url(["operator", "--liveness", "http://0.0.0.0:18080/live"]) == "http://127.0.0.1:18080/live"


@pytest.mark.process
def test_a_process_that_serves_nothing_is_unhealthy_and_says_why():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        proc = subprocess.run([sys.executable, "-m", "tts_cli", "healthcheck", "--pid", str(sleeper.pid)],
                              capture_output=True, text=True, timeout=60, env={**os.environ})
    finally:
        sleeper.kill()
    assert proc.returncode == 1 and "runs no tts-cluster router, worker or operator" in proc.stderr
    gone = subprocess.run([sys.executable, "-m", "tts_cli", "healthcheck", "--pid", "999999999"],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "cannot read process" in gone.stderr
