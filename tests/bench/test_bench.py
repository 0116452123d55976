"""A small run of each benchmark scenario: it must complete and write results of the documented shape.
Speed is the benchmarks' business, so nothing here looks at timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tts_bench.nginx import nginx_binary

pytestmark = pytest.mark.process


def bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tts_cli", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def nginx() -> None:
    if nginx_binary() is None:
        message = "nginx not installed: make test installs Debian's nginx-light"
        if os.environ.get("CI"):  # CI installs it; a missing nginx there is a broken setup, not a reason to skip
            pytest.fail(message)
        pytest.skip(reason=message)


@pytest.mark.slow
def test_cluster_scenario_writes_every_scenarios_results(tmp_path, voice_dir, nginx):
    done = bench("cluster", "--workers", "2", "--requests", "10", "--sweep", "0.5,1.0", "--seconds", "0.5",
                 "--base-seconds", "0.02", "--seconds-per-char", "0.0005",
                 "--voice-dir", str(voice_dir), "--out", str(tmp_path), timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "cluster.json").read_text())
    balancers = {"least-work", "least-loaded", "power-of-two", "round-robin", "nginx-least_conn", "nginx-round-robin"}

    def served(row, requests):
        assert row["requests"] == requests and row["ok"] + row["failed"] == requests
        assert row["p99_s"] >= row["p50_s"] > 0

    for side in ("before", "after"):
        row = report["seed_table"][side]
        assert row["single_request_s"] > 0 and row["peak_req_per_s"] > 0 and 0 < row["utilisation"] <= 1.05
        assert row["concurrent_10_failed"] == row["concurrent_20_failed"] == 0
    assert report["seed_table"]["after"]["admitted_at_once"] == 2 * 10
    assert set(report["policies"]["results"]) == balancers
    for row in report["policies"]["results"].values():
        served(row, 10)
        assert row["failed"] == 0
    ideal = report["policies"]["ideal_central_queue"]
    assert ideal["requests"] == 10 and ideal["p99_s"] >= ideal["p50_s"] > 0
    assert set(report["two_replicas"]["results"]) == {"least-work", "nginx-least_conn"}
    assert set(report["heterogeneous"]["results"]) == {"least-work", "least-loaded", "round-robin",
                                                       "nginx-least_conn"}
    assert set(report["scaling"]) == {"1", "2"} and all(r["throughput"] > 0 for r in report["scaling"].values())
    assert set(report["load_sweep"]) == {"0.5", "1"}
    for runs in report["load_sweep"].values():
        assert set(runs) == {"least-work", "round-robin", "nginx-least_conn", "ideal_central_queue"}
    killed = report["worker_killed"]
    assert set(killed) == {"least-work", "nginx-least_conn"}
    for row in killed.values():
        served(row, 10)
    # Our router says which requests it retried; nginx does not.
    assert killed["least-work"]["retried"] is not None and killed["nginx-least_conn"]["retried"] is None
    assert set(report["targets"]) >= {"throughput_n_vs_1", "p99_vs_round_robin", "p99_vs_nginx_least_conn",
                                      "p99_two_replicas_vs_two_nginx", "p99_vs_ideal_central_queue",
                                      "router_added_p50_ms", "failed_without_fault"}
    assert report["targets"]["failed_without_fault"] == 0
    for name in report["plots"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for title in ("the seed's table", "open loop at 80%", "two balancer replicas", "2x slower", "SIGKILLed",
                  "targets"):
        assert title in done.stdout


def test_router_scenario_writes_its_measures(tmp_path, voice_dir, nginx):
    done = bench("router", "--samples", "10", "--ceiling-requests", "40", "--clients", "4",
                 "--voice-dir", str(voice_dir), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "router.json").read_text())
    assert report["routed_p50_ms"] > 0 and report["direct_p50_ms"] > 0 and report["nginx_p50_ms"] > 0
    assert report["router_ceiling_req_per_s"] > 0 and report["worker_ceiling_req_per_s"] > 0
    assert report["stream_ttfb_direct_p50_ms"] > 0 and report["stream_ttfb_routed_p50_ms"] > 0


def test_worker_scenario_writes_its_measures(tmp_path, voice_dir):
    done = bench("worker", "--requests", "4", "--concurrency", "2", "--voice-dir", str(voice_dir),
                 "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "worker.json").read_text())
    assert report["worker_serial"]["statuses"] == {"200": 4}
    assert report["direct"]["rtf"] > 0 and report["worker_serial"]["rtf"] > 0
    assert set(report["overhead_s"]) >= {"p50", "p99", "mean", "ratio_worker_to_direct"}
