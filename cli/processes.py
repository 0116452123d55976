"""Start, await and stop real `tts-cluster` worker and router processes on local ports: what `tts-cluster up`,
the benchmarks, the chaos suite and the tests share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import httpx


def is_ready(url: str, timeout: float = 1.0) -> bool:
    """Whether the service at `url` answers /readyz with 200 (ready to serve), not merely listening."""
    try:
        return httpx.get(f"{url}/readyz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(5)
        return self.proc.returncode


def start_worker(
    args: list[str],
    log_dir: Path,
    env: Optional[dict[str, str]] = None,
    ready_timeout: float = 120.0,
    port: Optional[int] = None,
    host: str = "127.0.0.1",
) -> ServiceProcess:
    """`tts-cluster worker ARGS` on a free port (or `port` on another loopback address, as a pod IP would be);
    returns once /readyz answers 200."""
    return start_service("worker", args, log_dir, env, ready_timeout, port, host)


def start_router(
    args: list[str],
    log_dir: Path,
    env: Optional[dict[str, str]] = None,
    ready_timeout: float = 30.0,
    port: Optional[int] = None,
    wait_ready: bool = True,
) -> ServiceProcess:
    """`tts-cluster router ARGS` on a free port; returns once /readyz answers 200 (a worker is healthy)."""
    return start_service("router", args, log_dir, env, ready_timeout if wait_ready else 0.0, port)


def start_service(
    command: str,
    args: list[str],
    log_dir: Path,
    env: Optional[dict[str, str]] = None,
    ready_timeout: float = 120.0,
    port: Optional[int] = None,
    host: str = "127.0.0.1",
) -> ServiceProcess:
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{command}-{host}-{port}.log"
    full_env = {**os.environ, **(env or {})}
    cmd = [sys.executable, "-m", "tts_cli", command, "-a", host, "-p", str(port), *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    worker = ServiceProcess(proc, port, log_path, host)
    if ready_timeout <= 0:
        return worker
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{command} exited with {proc.returncode}:\n{worker.log_text()}")
        if is_ready(worker.url):
            return worker
        time.sleep(0.1)
    worker.stop()
    raise RuntimeError(f"{command} not ready after {ready_timeout} s:\n{worker.log_text()}")
