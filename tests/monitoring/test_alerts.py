"""The chart's alerting rules (helm/tts-cluster/files/alerts.yaml): valid for Prometheus (promtool check rules), each
with a case that fires and a case that stays quiet (promtool test rules, tests/monitoring/alerts_test.yaml), and
shipped as the chart's PrometheusRule unchanged."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from support.binaries import require
from support.paths import CHART

ALERTS = CHART / "files" / "alerts.yaml"
CASES = Path(__file__).with_name("alerts_test.yaml")


def alert_names() -> list[str]:
    return [r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r]


@pytest.mark.process
def test_promtool_accepts_the_rules():
    result = subprocess.run([require("promtool", "prometheus"), "check", "rules", str(ALERTS)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


@pytest.mark.process
def test_every_alert_fires_when_it_should_and_stays_quiet_otherwise():
    result = subprocess.run([require("promtool", "prometheus"), "test", "rules", CASES.name], cwd=CASES.parent,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    fires, quiet = set(), set()
    for test in yaml.safe_load(CASES.read_text())["tests"]:
        for case in test.get("alert_rule_test") or []:
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert sorted(fires) == sorted(alert_names()) == sorted(quiet)


@pytest.mark.unit
def test_the_chart_ships_the_rules_unchanged():
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the deploy extra) is not installed")
    chart = helm.Chart.load(str(CHART))
    out = chart.render({"monitoring": {"prometheusRule": {"enabled": True, "labels": {"release": "prom"}}}},
                       name="tts", namespace="voice", is_install=True)
    rules = [d for d in yaml.safe_load_all(out["tts-cluster/templates/monitoring.yaml"]) if d
             and d["kind"] == "PrometheusRule"]
    assert len(rules) == 1 and rules[0]["metadata"]["labels"]["release"] == "prom"
    assert rules[0]["spec"] == yaml.safe_load(ALERTS.read_text())
