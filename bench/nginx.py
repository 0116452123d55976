"""nginx as the peer balancer a user would otherwise put in front of the workers.

The configuration is what a careful operator would write for TTS: HTTP/1.1 keep-alive to the upstreams, no response
buffering (audio streams through), long read timeouts, and passive failover: a request is retried on the next
worker when connecting fails, times out or the worker answers 503 (full), POST included, since no byte has reached
the client then. One worker process, like one router process.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal, Optional

import httpx

from tts_cli.processes import free_port

Method = Literal["least_conn", "round-robin"]
INSTALL_HINT = "install Debian's nginx-light (make bench does: apt-get install nginx-light)"


def nginx_binary() -> Optional[str]:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).is_file()), None)


def config(port: int, workers: list[str], method: Method, root: Path) -> str:
    servers = "\n".join(f"    server {u.removeprefix('http://')} max_fails=3 fail_timeout=5s;" for u in workers)
    balance = "    least_conn;\n" if method == "least_conn" else ""
    return f"""worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  upstream tts {{
{balance}{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://tts;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_connect_timeout 2s;
      proxy_read_timeout 300s;
      proxy_next_upstream error timeout http_503 non_idempotent;
      proxy_next_upstream_tries 3;
    }}
  }}
}}
"""


class Nginx:
    """One nginx master + worker on a free 127.0.0.1 port, balancing over `workers` with `method`."""

    def __init__(self, workers: list[str], method: Method, root: Path) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError(f"nginx not found on PATH: {INSTALL_HINT}")
        self.port = free_port()
        # Its own folder, even when a later nginx of the same run gets a port an earlier one had.
        root.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f"nginx-{self.port}-", dir=root))
        conf = self.root / "nginx.conf"
        conf.write_text(config(self.port, workers, method, self.root), encoding="utf-8")
        self.method = method
        self.proc = subprocess.Popen([binary, "-p", str(self.root), "-c", str(conf), "-e", str(self.root / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self._errors()}")
            try:
                httpx.get(f"{self.url}/healthz", timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nginx did not answer on {self.url}: {self._errors()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _errors(self) -> str:
        log = self.root / "error.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
