"""A small run of each benchmark scenario: it must complete and write results of the documented shape.
Speed is the benchmarks' business, so nothing here looks at timings."""

from __future__ import annotations

import json
import subprocess
import sys


def bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tts_cli", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_policies_scenario_writes_every_policys_results(tmp_path, voice_dir):
    done = bench("policies", "--workers", "2", "--routers", "2", "--clients", "3", "--requests", "8",
                 "--policies", "least-work,round-robin", "--voice-dir", str(voice_dir), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "policies.json").read_text())
    for loop in ("closed_loop", "open_loop"):
        assert set(report["results"][loop]) == {"least-work", "round-robin"}
        for row in report["results"][loop].values():
            assert row["non_200"] == 0 and row["req_per_s"] > 0 and row["p99_s"] >= row["p50_s"] > 0
    assert "least-work" in done.stdout and "open loop" in done.stdout
    png = tmp_path / report["plot"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_router_scenario_writes_its_measures(tmp_path, voice_dir):
    done = bench("router", "--samples", "10", "--ceiling-requests", "40", "--clients", "4",
                 "--voice-dir", str(voice_dir), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "router.json").read_text())
    assert report["routed_p50_ms"] > 0 and report["direct_p50_ms"] > 0
    assert report["router_ceiling_req_per_s"] > 0 and report["worker_ceiling_req_per_s"] > 0


def test_worker_scenario_writes_its_measures(tmp_path, voice_dir):
    done = bench("worker", "--requests", "4", "--concurrency", "2", "--voice-dir", str(voice_dir),
                 "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "worker.json").read_text())
    assert report["worker_serial"]["statuses"] == {"200": 4}
    assert report["direct"]["rtf"] > 0 and report["worker_serial"]["rtf"] > 0
    assert set(report["overhead_s"]) >= {"p50", "p99", "mean", "ratio_worker_to_direct"}
