"""`tts-cluster up` started as its own process on free ports, for the tests of `up` and of clusters it runs."""

from __future__ import annotations

import subprocess
import sys

from support.wait import eventually
from tts_cli.processes import free_port, is_ready


def start_up(tmp_path, *args: str, ready_timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """`tts-cluster up` on a run of free ports. Another process may take one of them between the check and the
    bind (`up` gives its workers the ports after the router's): then once more, on other ports."""
    for _ in range(3):
        try:
            return _start_up(tmp_path, *args, ready_timeout=ready_timeout)
        except AssertionError as exc:
            if "address already in use" not in str(exc):
                raise
    raise AssertionError("no run of free ports for `up` after 3 tries")


def _start_up(tmp_path, *args: str, ready_timeout: float = 60) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # workers take the ports right after the router's: find a run of free ones
    while any(busy(port + i) for i in range(1, 4)):
        port = free_port()
    log = open(tmp_path / "up.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tts_cli", "up", "--port", str(port), *args],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "up.log").read_text()
        return is_ready(url)

    eventually(ready, timeout=ready_timeout, interval=0.1)
    return proc, url


def busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
