"""The dashboards and alerts against a real Prometheus (Debian's package) scraping a real local cluster.

`tts-cluster up --prometheus` starts the router, two workers and Prometheus, which scrapes them with the labels the
chart's ServiceMonitor gives in Kubernetes (tts_cli.prometheus). After a short load (API keys, catalog voices,
streams, refusals, a worker killed and restarted), every panel query and variable of every shipped dashboard is sent
to Prometheus's HTTP API as Grafana would send it: each must answer without error, and each must return at least
one series, except the GPU dashboard's DCGM series, which need NVIDIA's dcgm-exporter on a GPU (this machine has
neither: those queries must still evaluate without error). The chart's alert rules are loaded and must evaluate
without error, and the cluster's own alert for the killed worker's cut streams must fire.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.binaries import require
from support.params import tts_params
from support.paths import CHART, DASHBOARDS
from support.up import start_up
from support.wait import eventually
from tts_cli import prometheus
from tts_cli.processes import free_port

pytestmark = pytest.mark.process

KEY = "sk-monitoring-0123456789abcdef"
RATE_WINDOW = "15s"  # $__rate_interval: 15 scrapes at 1 s
# Grafana's values for its variables, as it sends a query: the "All" value `.*` for the dashboards' own variables.
GRAFANA = {"__rate_interval": RATE_WINDOW, "__interval": "1s", "__range": "5m", "namespace": prometheus.NAMESPACE,
           "worker": ".*"}
ALERTS = CHART / "files" / "alerts.yaml"


def substitute(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: GRAFANA.get(m.group(1), ".*"), expr)


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel or variable, PromQL) for every target and query variable of every shipped dashboard."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())

        def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for p in items:
                yield p
                yield from panels(p.get("panels") or [])

        for panel in panels(doc.get("panels") or []):
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    found.append((path.stem, panel.get("title", ""), target["expr"]))
        for var in (doc.get("templating") or {}).get("list") or []:
            query = var.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if var.get("type") == "query" and query:
                found.append((path.stem, f"${var['name']}", query))
    return found


def ask(base: str, expr: str) -> dict[str, Any]:
    """Prometheus's answer to a dashboard query; a `label_values(metric, label)` variable becomes its series query."""
    variable = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", expr)
    if variable:
        series, label = variable.groups()
        answer = httpx.get(f"{base}/api/v1/label/{label}/values", params={"match[]": substitute(series)},
                           timeout=30).json()
        return {"status": answer["status"], "error": answer.get("error"), "result": answer.get("data") or []}
    answer = httpx.get(f"{base}/api/v1/query", params={"query": substitute(expr)}, timeout=30).json()
    return {"status": answer["status"], "error": answer.get("error"),
            "result": (answer.get("data") or {}).get("result") or []}


@pytest.fixture
def monitored(tmp_path: Path, voice_dir: Path) -> Iterator[tuple[str, str, Path, int]]:
    require("prometheus", "prometheus")
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"id": "monitoring", "key": KEY}]}))
    voices = tmp_path / "voices.yaml"
    voices.write_text(yaml.safe_dump({"voices": [{"name": "alice", "synthetic": {"tone_hz": 330}},
                                                 {"name": "bob", "synthetic": {"tone_hz": 180, "speed": 1.2}}]}))
    port = free_port()
    proc, url = start_up(tmp_path, "--workers", "2", "--engine", "synthetic", "--voice-dir", str(voice_dir),
                         "--api-keys-file", str(keys), "--voices", str(voices), "--prometheus", "--prometheus-port",
                         str(port), "--prometheus-interval", "1s", "--prometheus-rules", str(ALERTS))
    try:
        yield url, f"http://127.0.0.1:{port}", tmp_path / "up.log", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def worker_pid(up: int, worker_id: str) -> int:
    """The process of worker `worker_id` that the `up` process `up` started (`worker ... --worker-id ID`)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in args and b"--worker-id" in args and \
                args[args.index(b"--worker-id") + 1] == worker_id.encode() and \
                (proc / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(up):
            return int(proc.name)
    raise AssertionError(f"no process of worker {worker_id}")


def load(url: str, seconds: float) -> list[int]:
    """Requests of every kind the dashboards count, from two clients, for `seconds`."""
    statuses: list[int] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    stop = threading.Event()

    def client(voice: str) -> None:
        with httpx.Client(timeout=60, headers=headers) as http:
            while not stop.is_set():
                r = http.get(f"{url}/tts", params={**tts_params(text="Monitoring, one two three."), "voice": voice,
                                                   "streaming_mode": "true"})
                statuses.append(r.status_code)
                statuses.append(http.post(f"{url}/tts", json={"text": ""}).status_code)  # the router refuses: 400
                statuses.append(http.get(f"{url}/tts", params={**tts_params(), "voice": "nobody"}).status_code)
                # A client that leaves before its audio: the worker counts it 499 (its failures panels).
                try:
                    http.get(f"{url}/tts", params=tts_params(text="Left before the answer. " * 10), timeout=0.2)
                except httpx.TimeoutException:
                    statuses.append(499)

    threads = [threading.Thread(target=client, args=(v,), daemon=True) for v in ("alice", "bob")]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    return statuses


def test_every_dashboard_query_answers_from_a_real_prometheus(monitored):
    url, base, log, up = monitored
    targets = eventually(lambda: (t := httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]
                                  ["activeTargets"]) and all(x["health"] == "up" for x in t) and t, timeout=30,
                         ignore=(httpx.HTTPError, ValueError))  # `up` starts Prometheus once the router is ready
    assert {(t["labels"]["job"], t["labels"]["pod"]) for t in targets} == {
        ("tts", "router"), ("tts-workers", "worker-0"), ("tts-workers", "worker-1")}
    statuses = load(url, 8)
    assert statuses.count(200) >= 10 and {400, 404, 499} <= set(statuses)
    # A worker killed under a stream: `up` restarts it; the router counts the cut stream and the worker's absence.
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as http:
        with http.stream("GET", f"{url}/tts", params={**tts_params(text="A long sentence to cut. " * 20),
                                                      "streaming_mode": "true"}) as stream:
            os.kill(worker_pid(up, stream.headers["x-worker-id"]), signal.SIGKILL)  # the worker serving this stream
            with pytest.raises(httpx.HTTPError):
                for _ in stream.iter_bytes():
                    pass
    eventually(lambda: "restarting" in log.read_text(), timeout=30)
    eventually(lambda: len([w for w in httpx.get(f"{url}/concurrent_stats", headers={
        "Authorization": f"Bearer {KEY}"}, timeout=5).json()["workers"] if w.get("healthy")]) == 2, timeout=60)
    load(url, 6)

    empty, errors = [], []
    for dashboard, panel, expr in dashboard_queries():
        answer = eventually(lambda expr=expr: ask(base, expr), timeout=10)
        if answer["status"] != "success":
            errors.append((dashboard, panel, answer["error"]))
        elif not answer["result"] and "DCGM_FI_" not in expr:
            empty.append((dashboard, panel, substitute(expr)))
    assert errors == [], errors
    assert empty == [], "\n".join(f"{d} / {p}: {e}" for d, p, e in empty)

    rules = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
    health = {r["name"]: (r["health"], r.get("lastError")) for g in rules for r in g["rules"]}
    assert health and all(h == "ok" for h, _ in health.values()), health
    firing = eventually(lambda: {a["labels"]["alertname"] for a in httpx.get(
        f"{base}/api/v1/alerts", timeout=5).json()["data"]["alerts"] if a["state"] == "firing"}, timeout=20)
    assert "TTSClusterTruncatedStreams" in firing
