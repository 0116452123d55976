"""Prometheus beside a local cluster (`tts-cluster up --prometheus`): the scrape configuration the chart's
ServiceMonitor gives a Prometheus Operator in a cluster, written as static targets, and the server itself.

The Prometheus Operator turns a ServiceMonitor endpoint into a job named after the Service, with the target labels
`namespace`, `service`, `pod`, `container` and `endpoint`; the dashboards select on them (`namespace=~"$namespace"`,
joins `on (job, instance)`). Here each process of `tts-cluster up` is a target with the labels it would have had in
the namespace `local`: the router behind the Service `<cluster>`, the workers behind `<cluster>-workers`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import httpx
import yaml

# The chart's ServiceMonitor endpoint (helm/tts-cluster/templates/monitoring.yaml): port "http", this path.
METRICS_PATH = "/metrics"
PORT_NAME = "http"
NAMESPACE = "local"


@dataclass(frozen=True)
class Target:
    """One process to scrape: its address, the Service it stands behind, its pod name and container."""

    address: str  # host:port
    service: str
    pod: str
    container: str


def config(targets: list[Target], interval: str = "5s", rule_files: tuple[Path, ...] = ()) -> dict[str, Any]:
    """prometheus.yml for the targets, one job per Service, labelled as the Prometheus Operator labels them."""
    jobs: dict[str, list[Target]] = {}
    for t in targets:
        jobs.setdefault(t.service, []).append(t)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p.absolute()) for p in rule_files],
        "scrape_configs": [
            {"job_name": service, "metrics_path": METRICS_PATH, "scrape_interval": interval,
             "static_configs": [{"targets": [t.address],
                                 "labels": {"namespace": NAMESPACE, "service": service, "pod": t.pod,
                                            "container": t.container, "endpoint": PORT_NAME}}
                                for t in members]}
            for service, members in jobs.items()
        ],
    }


def binary() -> Optional[str]:
    return shutil.which("prometheus")


def start(targets: list[Target], folder: Path, host: str, port: int, interval: str = "5s",
          rule_files: tuple[Path, ...] = (), log: Optional[Path] = None) -> subprocess.Popen[bytes]:
    """Prometheus on host:port with its data and configuration under `folder`; raises FileNotFoundError when no
    `prometheus` binary is on PATH (Debian's package: `apt-get install prometheus`, or `make prometheus`)."""
    exe = binary()
    if exe is None:
        raise FileNotFoundError("no prometheus binary on PATH: install Debian's prometheus package "
                                "(make prometheus)")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config(targets, interval, rule_files), sort_keys=False))
    out = open(log or folder / "prometheus.log", "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [exe, f"--config.file={path}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address={host}:{port}", "--storage.tsdb.retention.time=1d", "--web.enable-lifecycle"],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False
