"""Summary statistics of a run's samples, the same for every scenario and balancer."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any, Optional, Protocol


class _SampleLike(Protocol):
    status: int
    latency: float
    ttfb: Optional[float]
    retries: Optional[int]
    engine_s: Optional[float]


def pct(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else 0.0


def summarize(samples: Sequence[_SampleLike], wall: float, offered_rate: Optional[float] = None) -> dict[str, Any]:
    ok = [s for s in samples if 200 <= s.status < 300]
    lat = [s.latency for s in ok]
    ttfb = [s.ttfb for s in ok if s.ttfb is not None]
    engine = [s.engine_s for s in ok if s.engine_s is not None]
    retries = [s.retries for s in samples if s.retries is not None]
    return {
        "requests": len(samples),
        "ok": len(ok),
        "failed": len(samples) - len(ok),
        "statuses": _count(s.status for s in samples),
        "offered_rate": offered_rate,
        "throughput": len(ok) / wall if wall > 0 else 0.0,
        "mean_s": statistics.fmean(lat) if lat else 0.0,
        "p50_s": pct(lat, 0.5),
        "p95_s": pct(lat, 0.95),
        "p99_s": pct(lat, 0.99),
        "max_s": max(lat, default=0.0),
        "ttfb_p50_s": pct(ttfb, 0.5),
        "ttfb_p99_s": pct(ttfb, 0.99),
        "retried": sum(1 for r in retries if r > 0) if retries else None,
        "busy_s": sum(engine),  # engine time spent on answered requests: what utilisation is made of
    }


def _count(values: Iterable[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))
