"""The chaos suite's numbers: per scenario the counts of each outcome, the recovery time, peak memory and fds, and
the invariants checked; printed as one rich table and written to bench/results/chaos.json.

Recovery is measured on the client's clock, from the injection: until the first success of a request sent after
it, counted from the start of the run of successes that lasts to the end of the load (a fault that keeps failing
requests has not recovered), and, where the fault restarts something, until the restarted process served again.
`None` means it had not recovered when the load ended.
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .chaos_fleet import ProcMonitor
from .chaos_load import Outcome
from .stats import pct


@dataclass
class Check:
    """An invariant besides "nothing lost" (every worker alive afterwards, in-flight requests drained, ...)."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class Counts:
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0

    @staticmethod
    def of(outcomes: list[Outcome]) -> "Counts":
        by = Counter(o.verdict for o in outcomes)
        return Counts(len(outcomes), by["ok"], by["failed"], by["lost"])


@dataclass
class ScenarioResult:
    key: str
    title: str
    injected: str
    outcomes: list[Outcome] = field(default_factory=list)
    counts: Optional[Counts] = None  # given by scenarios whose "requests" are not HTTP requests (the operator)
    injected_at: Optional[float] = None
    recovery_s: Optional[float] = None
    recovery_applies: bool = True  # False where the fault lasts the whole run (nothing to recover from)
    peak_rss_mb: float = 0.0
    peak_fds: int = 0
    roles: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    error: Optional[str] = None  # the scenario itself could not run to the end

    @property
    def totals(self) -> Counts:
        return self.counts if self.counts is not None else Counts.of(self.outcomes)

    @property
    def passed(self) -> bool:
        return self.error is None and self.totals.lost == 0 and all(c.ok for c in self.checks)

    def measure(self, monitor: ProcMonitor) -> None:
        self.peak_rss_mb = round(monitor.peak_rss_kb / 1024, 1)
        self.peak_fds = monitor.peak_fds
        self.roles = {role: {"peak_rss_mb": round(kb / 1024, 1), "peak_fds": monitor.role_fds.get(role, 0)}
                      for role, kb in sorted(monitor.role_rss_kb.items())}


# ---- recovery ------------------------------------------------------------------------------------------------


def steady_success(outcomes: list[Outcome], at: float) -> Optional[float]:
    """Seconds from `at` until the first success of the run of successes that lasts to the end."""
    after = sorted((o for o in outcomes if o.sent_at >= at), key=lambda o: o.sent_at)
    if not after or after[-1].verdict != "ok":
        return None
    start = max((i for i, o in enumerate(after) if o.verdict != "ok"), default=-1) + 1
    return max(0.0, after[start].done_at - at)


def served_again(outcomes: list[Outcome], since: float, by: Callable[[Outcome], bool]) -> Optional[float]:
    """Clock time of the first success sent at or after `since` that `by` says the restarted process served."""
    done = [o.done_at for o in outcomes if o.verdict == "ok" and o.sent_at >= since and by(o)]
    return min(done) if done else None


def recovery(outcomes: list[Outcome], at: Optional[float], back_at: Optional[float] = None,
             needs_back: bool = False) -> Optional[float]:
    """The later of steady success and (when `needs_back`) the restarted process serving again."""
    if at is None:
        return None
    steady = steady_success(outcomes, at)
    if not needs_back:
        return steady
    if steady is None or back_at is None:
        return None
    return max(steady, back_at - at)


# ---- output --------------------------------------------------------------------------------------------------


def _details(outcomes: list[Outcome], verdict: str) -> dict[str, int]:
    return dict(Counter(o.detail for o in outcomes if o.verdict == verdict).most_common(12))


def scenario_json(r: ScenarioResult) -> dict[str, Any]:
    t = r.totals
    ok = [o for o in r.outcomes if o.verdict == "ok"]
    latencies = sorted(o.done_at - o.sent_at for o in ok)
    return {
        "key": r.key, "title": r.title, "injected": r.injected, "passed": r.passed, "error": r.error,
        "sent": t.sent, "succeeded": t.succeeded, "failed_visibly": t.failed, "lost": t.lost,
        "recovery_s": None if r.recovery_s is None else round(r.recovery_s, 3),
        "recovery_applies": r.recovery_applies,
        "injected_at_s": None if r.injected_at is None else round(r.injected_at, 3),
        "peak_rss_mb": r.peak_rss_mb, "peak_fds": r.peak_fds, "processes": r.roles,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in r.checks],
        "failed_visibly_by_reason": _details(r.outcomes, "failed"),
        "lost_by_reason": _details(r.outcomes, "lost"),
        "lost_examples": [{"index": o.index, "mode": o.mode, "media": o.media, "status": o.status,
                           "worker": o.worker, "detail": o.detail, "sent_at_s": round(o.sent_at, 3)}
                          for o in r.outcomes if o.verdict == "lost"][:10],
        "failovers": sum(1 for o in r.outcomes if o.attempts > 1),
        "latency_ok_p50_s": round(pct(latencies, 0.5), 4) if latencies else None,
        "latency_ok_p99_s": round(pct(latencies, 0.99), 4) if latencies else None,
        "latency_ok_max_s": round(latencies[-1], 4) if latencies else None,
        "by_mode": {str(m): vars(Counts.of([o for o in r.outcomes if o.mode == m]))
                    for m in sorted({o.mode for o in r.outcomes})},
        "wall_s": round(r.wall_s, 2),
        **({"extra": r.extra} if r.extra else {}),
    }


def report(results: list[ScenarioResult], command: str, flags: dict[str, Any], hardening: dict[str, list[str]],
           wall_s: float) -> dict[str, Any]:
    return {
        "scenario": "chaos",
        "command": command,
        "flags": flags,
        "hardening_flags": hardening,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "definitions": {
            "succeeded": "2xx with the whole audio (raw: exactly the synthetic engine's byte count; ogg/aac: decoded "
                         "sample count)",
            "failed_visibly": "4xx/5xx, connection refused or reset, or a body cut so that the HTTP library raised",
            "lost": "accepted and not answered within the bound, or a 2xx with short or long audio and no error",
            "recovery_s": "from the injection until the first success of the run of successes lasting to the end "
                          "of the load, and until a restarted process served again; null: not recovered",
        },
        "passed": all(r.passed for r in results),
        "lost_total": sum(r.totals.lost for r in results),
        "wall_s": round(wall_s, 1),
        "scenarios": [scenario_json(r) for r in results],
    }


def write(out: Path, data: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "chaos.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def print_table(console: Any, results: list[ScenarioResult], title: str) -> None:
    """The table, then one line per broken invariant or kind of loss, so a failing run says what broke."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("scenario", max_width=20)
    t.add_column("injected", min_width=24)
    for col in ("sent", "succeeded", "failed visibly", "lost", "recovery s", "peak RSS MB", "peak fds"):
        t.add_column(col, justify="right")
    for r in results:
        n = r.totals
        name = r.title if r.passed else f"[bold red]{r.title}[/]"
        t.add_row(name, r.injected, str(n.sent), str(n.succeeded), str(n.failed),
                  f"[bold red]{n.lost}[/]" if n.lost else "0", _recovery(r), f"{r.peak_rss_mb:.0f}",
                  str(r.peak_fds))
    console.print(t)
    bad = problems(results)
    for line in bad:
        console.print(f"[red]{line}[/]")
    failed = sum(1 for r in results if not r.passed)
    console.print(f"[bold red]{failed} of {len(results)} scenarios failed[/]" if failed else
                  f"[green]all {len(results)} scenarios passed: nothing lost, every invariant held[/]")


def print_restart(console: Any, results: list[ScenarioResult]) -> None:
    """One line for the router's SIGTERM (scenario 5): from the signal to the restarted router's /readyz 200, and
    its parts."""
    for r in results:
        x = r.extra
        if r.key == "router-term" and x.get("signal_to_ready_s") is not None:
            first = x.get("signal_to_first_success_s")
            console.print(f"router SIGTERM -> ready {x['signal_to_ready_s']:.2f} s = exit {x['signal_to_exit_s']:.2f} s "
                          f"(the requests it held finishing) + start-up {x['exit_to_ready_s']:.2f} s; first success "
                          f"{'n/a' if first is None else f'{first:.2f} s'}", soft_wrap=True)


def _recovery(r: ScenarioResult) -> str:
    if r.recovery_s is not None:
        return f"{r.recovery_s:.2f}"
    return "never" if r.injected_at is not None and r.recovery_applies else "n/a"


def problems(results: list[ScenarioResult]) -> list[str]:
    out = []
    for r in results:
        if r.error:
            out.append(f"{r.key}: could not run: {r.error}")
        for detail, n in _details(r.outcomes, "lost").items():
            out.append(f"{r.key}: {n} lost: {detail}")
        if r.counts is not None and r.counts.lost:
            out.append(f"{r.key}: {r.counts.lost} lost")
        out += [f"{r.key}: {c.name}: {c.detail}" for c in r.checks if not c.ok]
    return out
