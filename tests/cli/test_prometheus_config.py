"""`tts-cluster up --prometheus`'s scrape configuration: the chart's ServiceMonitor endpoint, and the labels the
Prometheus Operator gives its targets (the dashboards select and join on them)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from support.paths import CHART
from tts_cli import prometheus


@pytest.mark.unit
def test_the_local_scrape_is_the_charts_service_monitor():
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the deploy extra) is not installed")
    out = helm.Chart.load(str(CHART)).render({"monitoring": {"serviceMonitor": {"enabled": True}}}, name="tts",
                                             namespace="voice", is_install=True)
    monitor = next(d for d in yaml.safe_load_all(out["tts-cluster/templates/monitoring.yaml"]) if d)
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["path"], endpoint["port"]) == (prometheus.METRICS_PATH, prometheus.PORT_NAME)


@pytest.mark.unit
def test_one_job_per_service_with_the_operators_target_labels():
    targets = [prometheus.Target("127.0.0.1:9880", "tts", "router", "router"),
               prometheus.Target("127.0.0.1:9881", "tts-workers", "worker-0", "worker"),
               prometheus.Target("127.0.0.1:9882", "tts-workers", "worker-1", "worker")]
    config = prometheus.config(targets, "1s", (Path("alerts.yaml"),))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert list(jobs) == ["tts", "tts-workers"]
    workers = jobs["tts-workers"]["static_configs"]
    assert [c["targets"] for c in workers] == [["127.0.0.1:9881"], ["127.0.0.1:9882"]]
    assert workers[1]["labels"] == {"namespace": "local", "service": "tts-workers", "pod": "worker-1",
                                    "container": "worker", "endpoint": "http"}
    assert config["global"]["scrape_interval"] == "1s" and config["rule_files"][0].endswith("alerts.yaml")


@pytest.mark.process
def test_up_says_how_to_get_prometheus_when_it_is_missing(tmp_path, voice_dir):
    import subprocess

    done = subprocess.run([sys.executable, "-m", "tts_cli", "up", "--workers", "1", "--engine", "synthetic",
                           "--voice-dir", str(voice_dir), "--prometheus"],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/nonexistent"}, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 2 and "no prometheus binary on PATH" in out and "make prometheus" in out
    assert "starting" not in out  # refused before any worker started
