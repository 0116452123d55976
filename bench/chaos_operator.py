"""The chaos suite's operator scenario: the real kopf operator process SIGKILLed right after a TTSCluster is
scaled, then restarted, while the API server answers some of its writes with 409 Conflict and 5xx.

It runs against the tests' Kubernetes API emulator (kmock's, on a real 127.0.0.1 port) and reuses the operator
tests' harness (`Cluster` in tests/support/operator_cluster.py), so it needs the repository's
tests/ folder and the test extra; without them the scenario reports that it could not run. The operator must
converge to exactly the wanted worker pods: none missing (a scale lost with the process) and none extra (a create
repeated after a restart or a failed write).

Its "requests" are the operator's writes to the API server: sent = writes the fault plan saw, failed visibly =
those answered with an injected error, lost = worker pods missing or extra at the end.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from . import checkout
from .chaos_fleet import ProcMonitor
from .chaos_report import Check, Counts, ScenarioResult

HARNESS = Path("tests") / "support" / "operator_cluster.py"
NAME = "chaos"
FAULT_PLAN = [409, 0, 500, 0, 0, 503, 0, 409, 0, 500, 0, 0, 503, 0, 409, 500]  # 0: served normally
FAULT_PLURALS = ("pods", "ttsclusters")  # the operator's own work; kopf's Events may pass


def _harness() -> Optional[ModuleType]:
    """The tests' operator harness (tests/support/operator_cluster.py: Cluster, EXTRA) with the emulator, or None
    outside a checkout."""
    harness = checkout.find(HARNESS)
    if harness is None:
        return None
    tests = str(harness.parents[1])
    if tests not in sys.path:
        sys.path.insert(0, tests)
    try:
        return importlib.import_module("support.operator_cluster")
    except ImportError:  # the test extra (kmock) is not installed
        return None


def _wait(fn: Callable[[], bool], timeout: float, step: float = 0.05) -> Optional[float]:
    """Poll `fn` until true; the monotonic time it became true, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return time.monotonic()
        time.sleep(step)
    return None


def operator_kill(logs: Path, monitor: ProcMonitor, before: int = 2, after: int = 5,
                  hold: float = 2.0) -> ScenarioResult:
    result = ScenarioResult("operator-kill", "15 operator SIGKILL",
                            f"scale {before}->{after}, SIGKILL, restart; 409/5xx")
    h = _harness()
    if h is None:
        result.error = "needs the repository's tests/ folder and the test extra (kmock)"
        return result
    from support.kube_emulator import TTSCLUSTER, KubeAPI

    logs.mkdir(parents=True, exist_ok=True)
    with KubeAPI(resources=[TTSCLUSTER, *h.EXTRA]) as kube:
        cluster = h.Cluster(kube, logs)
        try:
            _run(cluster, kube, monitor, result, before, after, hold)
        finally:
            cluster.stop_operator()
    return result


def _start(cluster: Any, monitor: ProcMonitor, role: str) -> None:
    # The pods never run in the emulator: the not-ready replacement must not act within the scenario.
    cluster.start_operator("--not-ready-seconds", "600")
    monitor.watch(role, cluster.operator.pid)


def _run(cluster: Any, kube: Any, monitor: ProcMonitor, result: ScenarioResult, before: int, after: int,
         hold: float) -> None:
    def count() -> int:
        return len(cluster.workers(NAME))

    _start(cluster, monitor, "operator")
    cluster.create(NAME, {"workers": {"replicas": before}})
    if _wait(lambda: count() == before, 30) is None:
        result.error = f"the operator never made the first {before} workers"
        return
    t0 = time.monotonic()
    cluster.patch_spec(NAME, {"workers": {"replicas": after}})
    kube.fail_writes(FAULT_PLAN, plurals=FAULT_PLURALS)
    _wait(lambda: count() > before, 2.0, step=0.01)  # "right after the scale": as the first new pod appears
    killed_at = time.monotonic()
    cluster.operator.kill()
    cluster.operator.wait(10)
    at_kill = count()
    _start(cluster, monitor, "operator (restarted)")
    restarted_at = time.monotonic()
    reached = _wait(lambda: count() == after, 40)
    seen = _hold(count, hold)
    names = [p.metadata.name for p in cluster.workers(NAME)]
    status_at = _wait(lambda: (cluster.get(NAME).get("status") or {}).get("workers") == after, 10)
    status_ok = status_at is not None
    faults = kube.fault_counts()
    injected = sum(faults["injected"].values())
    final = len(names)
    result.counts = Counts(faults["matched"], faults["matched"] - injected, injected,
                           abs(after - final) + max(0, max(seen, default=final) - after))
    result.injected_at = killed_at - t0
    result.recovery_s = None if reached is None else reached - killed_at
    result.checks = [
        Check("exactly the wanted worker pods", final == after and max(seen, default=0) <= after,
              f"{final} worker pods at the end (wanted {after}), at most {max(seen, default=0)} while held"),
        Check("no duplicate pod names", len(set(names)) == len(names), ", ".join(names)),
        Check("status caught up", status_ok, f"status.workers == {after}"),
    ]
    result.extra = {"pods_at_kill": at_kill, "pods_at_end": names, "fault_plan": FAULT_PLAN,
                    "faults": faults, "kill_after_scale_s": round(killed_at - t0, 3),
                    "restart_s": round(restarted_at - killed_at, 2),
                    "status_caught_up_s": None if status_at is None else round(status_at - killed_at, 2),
                    "operator_log_tail": cluster.log()[-1500:] if final != after else ""}


def _hold(count: Callable[[], int], seconds: float) -> list[int]:
    """Pod counts over `seconds` (several reconciliation intervals): a late duplicate shows up here."""
    seen = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seen.append(count())
        time.sleep(0.1)
    return seen
