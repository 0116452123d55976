"""`tts-cluster bench policies`: routing policies side by side on the same synthetic workers.

Several router replicas share nothing but the workers' own /stats, as in a real deployment; clients are spread over
them (closed loop) and send mixed-length texts. Each policy gets the same texts in the same order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from .corpus import mixed_texts
from .procs import start_router, start_worker

POLICIES = ["least-work", "least-loaded", "power-of-two", "round-robin"]


def add_arguments(p: Any) -> None:
    p.add_argument("--workers", type=int, default=4, help="synthetic workers [default 4]")
    p.add_argument("--routers", type=int, default=2, help="router replicas per policy [default 2]")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients [default 16]")
    p.add_argument("--requests", type=int, default=160, help="requests per policy [default 160]")
    p.add_argument("--seconds-per-char", type=float, default=0.004, help="synthetic service time per character")
    p.add_argument("--policies", default=",".join(POLICIES), help="comma-separated policies to compare")
    p.add_argument("--slow-factor", type=float, default=1.0,
                   help="make the first worker this many times slower (heterogeneous workers) [default 1]")
    p.add_argument("--load", type=float, default=0.8,
                   help="open loop: Poisson arrivals at this fraction of the measured closed-loop capacity "
                        "(0 for closed loop only) [default 0.8]")


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else 0.0


class _Record:
    """Latency and status of every request of one run."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.progress, self.task = progress, task

    async def post(self, client: httpx.AsyncClient, url: str, text: str) -> None:
        t0 = time.perf_counter()
        r = await client.post(f"{url}/tts", json={"text": text, "text_lang": "en", "prompt_lang": "en",
                                                  "ref_audio_path": "reference.wav", "media_type": "raw"})
        self.latencies.append(time.perf_counter() - t0)
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        self.progress.advance(self.task)

    def result(self, wall: float) -> dict[str, Any]:
        return {"latencies": self.latencies, "wall": wall, "statuses": self.statuses}


async def _load(urls: list[str], texts: list[str], clients: int, progress: Any, task: Any) -> dict[str, Any]:
    record = _Record(progress, task)
    todo = iter(texts)
    spread = itertools.cycle(urls)
    async with httpx.AsyncClient(timeout=300) as client:

        async def user(url: str) -> None:
            for text in todo:
                await record.post(client, url, text)

        t0 = time.perf_counter()
        await asyncio.gather(*(user(next(spread)) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return record.result(wall)


async def _open_loop(urls: list[str], texts: list[str], rate: float, seed: int, progress: Any,
                     task: Any) -> dict[str, Any]:
    """Poisson arrivals at `rate` req/s whatever the answers: queueing shows up as latency, not as slower offers."""
    import random

    rng = random.Random(seed)
    record = _Record(progress, task)
    spread = itertools.cycle(urls)
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=None)) as client:
        t0 = time.perf_counter()
        pending = []
        for text in texts:
            pending.append(asyncio.create_task(record.post(client, next(spread), text)))
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.gather(*pending)
        wall = time.perf_counter() - t0
    return record.result(wall)


def run(args: Any, console: Any, progress: Any, voice_dir: Path, out: Path) -> dict[str, Any]:
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    texts = mixed_texts(args.requests, seed=11)
    results: dict[str, Any] = {}
    open_results: dict[str, Any] = {}
    rate = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        boot = progress.add_task(f"starting {args.workers} synthetic workers", total=None)
        workers = [
            start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--synthetic-base-seconds", "0.02",
                          "--synthetic-seconds-per-char",
                          str(args.seconds_per_char * (args.slow_factor if i == 0 else 1.0)),
                          "--max-queue-size", "64", "--log-level", "warning"], logs)
            for i in range(args.workers)
        ]
        progress.remove_task(boot)
        try:
            # One warm-up pass so every worker has measured its seconds per character.
            warm = start_router([*(f for w in workers for f in ("--worker", w.url)), "--policy", "round-robin"], logs)
            asyncio.run(_load([warm.url], mixed_texts(args.workers * 3, seed=3), args.workers,
                              progress, progress.add_task("warm-up", total=args.workers * 3)))
            warm.stop()
            for policy in policies:
                routers = [
                    start_router([*(f for w in workers for f in ("--worker", w.url)), "--policy", policy,
                                  "--log-level", "warning"], logs)
                    for _ in range(args.routers)
                ]
                try:
                    task = progress.add_task(f"{policy} x{args.routers} routers", total=len(texts))
                    results[policy] = asyncio.run(_load([r.url for r in routers], texts, args.clients, progress, task))
                    if args.load > 0:
                        if not rate:  # fixed from the first policy's capacity, so every policy gets the same offer
                            rate = args.load * len(texts) / results[policy]["wall"]
                        task = progress.add_task(f"{policy} open loop {rate:.1f}/s", total=len(texts))
                        open_results[policy] = asyncio.run(
                            _open_loop([r.url for r in routers], texts, rate, 5, progress, task)
                        )
                finally:
                    for r in routers:
                        r.stop()
        finally:
            for w in workers:
                w.stop()

    slow = f" (one {args.slow_factor:g}x slower)" if args.slow_factor != 1 else ""
    summary = {"closed_loop": _table(console, results, f"closed loop: {args.workers} synthetic workers{slow}, "
                                     f"{args.routers} routers, {args.clients} clients, {args.requests} mixed texts")}
    if open_results:
        summary["open_loop"] = _table(console, open_results, f"open loop: Poisson arrivals at {rate:.2f} req/s "
                                      f"({args.load:.0%} of the first policy's closed-loop throughput)")
        summary["open_loop_rate"] = rate
    report = {"scenario": "policies", "machine": {"platform": platform.platform(), "python": platform.python_version()},
              "workers": args.workers, "routers": args.routers, "clients": args.clients, "requests": args.requests,
              "seconds_per_char": args.seconds_per_char, "slow_factor": args.slow_factor, "results": summary}
    out.mkdir(parents=True, exist_ok=True)
    stem = "policies" if args.slow_factor == 1 else f"policies-slow{args.slow_factor:g}"
    plot = _plot_cdf(results, open_results, out / f"{stem}-latency-cdf.png", slow)
    report["plot"] = plot.name
    path = out / f"{stem}.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    console.print(f"wrote {path}")
    return report


def _table(console: Any, results: dict[str, Any], title: str) -> dict[str, Any]:
    from rich.table import Table

    table = Table(title=title)
    for col in ("policy", "req/s", "mean s", "p50 s", "p95 s", "p99 s", "non-200"):
        table.add_column(col, justify="right")
    summary = {}
    for policy, res in results.items():
        lat = res["latencies"]
        row = {"req_per_s": len(lat) / res["wall"], "mean_s": statistics.fmean(lat), "p50_s": _pct(lat, 0.5),
               "p95_s": _pct(lat, 0.95), "p99_s": _pct(lat, 0.99),
               "non_200": sum(n for s, n in res["statuses"].items() if s != 200)}
        summary[policy] = row
        table.add_row(policy, f"{row['req_per_s']:.2f}", f"{row['mean_s']:.3f}", f"{row['p50_s']:.3f}",
                      f"{row['p95_s']:.3f}", f"{row['p99_s']:.3f}", str(row["non_200"]))
    console.print(table)
    return summary


def _plot_cdf(closed: dict[str, Any], opened: dict[str, Any], path: Path, note: str) -> Path:
    """Latency CDF per policy, closed and open loop side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("closed loop", closed)] + ([("open loop", opened)] if opened else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, results) in zip(axes[0], panels, strict=True):
        for policy, res in results.items():
            lat = sorted(res["latencies"])
            ax.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], label=policy)
        ax.set_title(f"{title}{note}")
        ax.set_xlabel("latency (s)")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
