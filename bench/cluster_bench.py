"""`tts-cluster bench cluster`: the seed's before/after table, our policies against round-robin and nginx, two
replicas, a slow worker, a worker killed mid-run, scaling and load curves, and the ideal, in one invocation on the
same synthetic workers.

The synthetic engine sleeps for a service time that grows with the text (a GPU's latency with an idle CPU), so a
2-core machine can still run N workers without the CPU capping N. Every balancer is offered the same texts at the
same (seeded Poisson) arrival times, and each runs alone: routers are started for their run and stopped after, so
no idle balancer polls the workers during another's run.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import httpx

from tts_cli.processes import ServiceProcess, start_router, start_worker

from .corpus import mixed_texts
from .ideal import central_queue_latencies, ideal_throughput
from .loadgen import LoadGenerator, Run, poisson_arrivals
from .nginx import Method, Nginx
from .stats import pct

POLICIES = ["least-work", "least-loaded", "power-of-two", "round-robin"]
DEFAULT_POLICY = "least-work"
NGINX_METHODS: list[Method] = ["least_conn", "round-robin"]


def add_arguments(p: Any) -> None:
    p.add_argument("--workers", type=int, default=4, help="synthetic workers behind each balancer [default 4]")
    p.add_argument("--base-seconds", type=float, default=0.05, help="synthetic service time per request [0.05]")
    p.add_argument("--seconds-per-char", type=float, default=0.002, help="synthetic service time per char [0.002]")
    p.add_argument("--queue", type=int, default=10, help="each worker's max queue size (the seed's 10 per GPU)")
    p.add_argument("--load", type=float, default=0.8,
                   help="offered load of the policy comparison, as a fraction of the ideal capacity [0.8]")
    p.add_argument("--requests", type=int, default=300, help="requests per run at --load [300]")
    p.add_argument("--sweep", default="0.5,0.7,0.8,0.9,1.0,1.1",
                   help="offered loads (fractions of the ideal capacity) of the load curves")
    p.add_argument("--seconds", type=float, default=8.0,
                   help="length of each peak-throughput, scaling and load-curve run, in seconds [8]")
    p.add_argument("--slow-factor", type=float, default=2.0, help="the heterogeneous run's slow worker [2]")
    p.add_argument("--seed", type=int, default=7, help="texts and arrival times [7]")


class Fleet:
    """Owns every process a run starts; `close` stops them all, whatever happened."""

    def __init__(self, args: Any, voice_dir: Path, logs: Path) -> None:
        self.args, self.voice_dir, self.logs = args, voice_dir, logs
        self.procs: list[Any] = []

    def worker(self, slow: float = 1.0, queue: Optional[int] = None) -> ServiceProcess:
        w = start_worker(["--engine", "synthetic", "--voice-dir", str(self.voice_dir),
                          "--synthetic-base-seconds", str(self.args.base_seconds * slow),
                          "--synthetic-seconds-per-char", str(self.args.seconds_per_char * slow),
                          "--max-queue-size", str(queue or self.args.queue), "--log-level", "warning"], self.logs)
        self.procs.append(w)
        return w

    @contextmanager
    def balancers(self, kind: str, workers: list[ServiceProcess], replicas: int = 1) -> Iterator[list[str]]:
        """`kind`: one of our policies, or `nginx-least_conn` / `nginx-round-robin`. Yields the entry URLs."""
        started: list[Any] = []
        try:
            for _ in range(replicas):
                if kind.startswith("nginx-"):
                    method: Method = "least_conn" if kind == "nginx-least_conn" else "round-robin"
                    started.append(Nginx([w.url for w in workers], method, self.logs))
                else:
                    started.append(start_router([*(f for w in workers for f in ("--worker", w.url)), "--policy",
                                                 kind, "--log-level", "warning"], self.logs))
            yield [b.url for b in started]
        finally:
            for b in started:
                b.stop()

    def close(self) -> None:
        for p in self.procs:
            p.stop()


class Bench:
    def __init__(self, args: Any, progress: Any, fleet: Fleet) -> None:
        self.args, self.progress, self.fleet = args, progress, fleet

    def _run(self, label: str, total: int, go: Callable[[LoadGenerator], Any], urls: list[str]) -> Run:
        task = self.progress.add_task(label, total=total)
        gen = LoadGenerator(urls, on_done=lambda _s: self.progress.advance(task))
        run: Run = asyncio.run(go(gen))
        self.progress.update(task, visible=False)
        return run

    def closed(self, label: str, urls: list[str], texts: list[str], clients: int) -> Run:
        return self._run(label, len(texts), lambda g: g.closed_loop(texts, clients, label), urls)

    def opened(self, label: str, urls: list[str], texts: list[str], arrivals: list[float],
               at: Optional[dict[float, Callable[[], None]]] = None) -> Run:
        return self._run(label, len(texts), lambda g: g.open_loop(texts, arrivals, label, at), urls)

    def warm(self, workers: list[ServiceProcess]) -> None:
        """A few requests on each worker, so each has measured its own seconds per character (least-work's input)."""
        for w in workers:
            self.closed(f"warm-up {w.url}", [w.url], mixed_texts(6, seed=3), 2)

    # ---- scenarios -------------------------------------------------------------------------------------------

    def seed_table(self, before: ServiceProcess, workers: list[ServiceProcess], capacity_hint: float) -> dict[str, Any]:
        """The seed's rows: one request, 10 and 20 concurrent, peak throughput; one worker direct vs N routed."""
        texts = mixed_texts(20, seed=self.args.seed)
        rows: dict[str, Any] = {}
        n = len(workers)
        with self.fleet.balancers(DEFAULT_POLICY, workers) as routed:
            for side, urls, engines in (("before", [before.url], 1), ("after", routed, n)):
                single = [self.closed(f"{side}: 1 request", urls, [t], 1).samples[0].latency for t in texts[:5]]
                c10 = self.closed(f"{side}: 10 concurrent", urls, texts[:10], 10)
                c20 = self.closed(f"{side}: 20 concurrent", urls, texts[:20], 20)
                # The same text mix on both sides (N passes over one list), so throughput compares like with like.
                peak_texts = mixed_texts(max(4, int(capacity_hint * self.args.seconds)), seed=self.args.seed + 1)
                peak = self.closed(f"{side}: peak throughput", urls, peak_texts * engines, engines * 3)
                ps = peak.summary()
                rows[side] = {
                    "engines": engines,
                    "single_request_s": pct(single, 0.5),
                    "concurrent_10_s": c10.wall, "concurrent_10_failed": c10.summary()["failed"],
                    "concurrent_20_s": c20.wall, "concurrent_20_failed": c20.summary()["failed"],
                    "peak_req_per_s": ps["throughput"], "peak_failed": ps["failed"],
                    "utilisation": ps["busy_s"] / (peak.wall * engines) if peak.wall else 0.0,
                    "admitted_at_once": None if side == "before" else self._admitted(workers),
                }
        return rows

    def _admitted(self, workers: list[ServiceProcess]) -> int:
        return sum(httpx.get(f"{w.url}/stats", timeout=5).json()["capacity"] for w in workers)

    def compare(self, title: str, kinds: list[str], workers: list[ServiceProcess], texts: list[str],
                arrivals: list[float], replicas: int = 1) -> dict[str, Run]:
        runs = {}
        for kind in kinds:
            with self.fleet.balancers(kind, workers, replicas) as urls:
                runs[kind] = self.opened(f"{title}: {kind}", urls, texts, arrivals)
        return runs

    def killed(self, kinds: list[str], workers: list[ServiceProcess], texts: list[str],
               arrivals: list[float]) -> dict[str, Run]:
        """Each balancer gets a fresh fourth worker, SIGKILLed a third of the way through the arrivals."""
        runs = {}
        for kind in kinds:
            victim = self.fleet.worker()
            self.warm([victim])
            with self.fleet.balancers(kind, [*workers, victim]) as urls:
                when = arrivals[len(arrivals) // 3]
                run = self.opened(f"worker killed: {kind}", urls, texts, arrivals, at={when: victim.proc.kill})
                run.extra["killed_at_s"] = when
                runs[kind] = run
            victim.stop()
        return runs


def _ideal(runs: dict[str, Run], arrivals: list[float], servers: int,
           speed: Optional[list[float]] = None, slow_worker: Optional[str] = None,
           slow: float = 1.0) -> list[float]:
    """The central queue fed the run's arrivals and, per request, the median engine time measured across runs
    (scaled back to a normal worker's when a slow worker served it)."""
    per_request: list[list[float]] = [[] for _ in arrivals]
    for run in runs.values():
        for s in run.samples:
            if s.engine_s is not None:
                per_request[s.index].append(s.engine_s / (slow if slow_worker and s.worker == slow_worker else 1.0))
    known = [v for vs in per_request for v in vs]
    fallback = sorted(known)[len(known) // 2] if known else 0.0
    service = [sorted(vs)[len(vs) // 2] if vs else fallback for vs in per_request]
    return central_queue_latencies(arrivals, service, servers, speed)


def _ideal_row(latencies: list[float]) -> dict[str, Any]:
    # Every job is served in the simulation: its throughput is the offered rate, so none is given.
    return {"requests": len(latencies), "ok": len(latencies), "failed": 0, "throughput": None,
            "mean_s": sum(latencies) / len(latencies), "p50_s": pct(latencies, 0.5), "p95_s": pct(latencies, 0.95),
            "p99_s": pct(latencies, 0.99), "max_s": max(latencies)}


def run(args: Any, console: Any, progress: Any, voice_dir: Path, out: Path) -> dict[str, Any]:
    n = args.workers
    sweep = [float(x) for x in args.sweep.split(",") if x.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(args, voice_dir, Path(tmp))
        bench = Bench(args, progress, fleet)
        try:
            boot = progress.add_task(f"starting {n + 2} synthetic workers", total=None)
            workers = [fleet.worker() for _ in range(n)]
            before = fleet.worker(queue=256)  # the seed's single server: one engine, every request waits its turn
            slow = fleet.worker(slow=args.slow_factor)
            progress.update(boot, visible=False)
            bench.warm([*workers, before, slow])
            mean_service = args.base_seconds + args.seconds_per_char * _mean_chars(args.seed)

            seed = bench.seed_table(before, workers, 1.0 / mean_service)
            before.stop()
            single_peak = seed["before"]["peak_req_per_s"]
            capacity = ideal_throughput(single_peak, n)

            texts = mixed_texts(args.requests, seed=args.seed)
            arrivals = poisson_arrivals(args.requests, args.load * capacity, seed=args.seed)
            kinds = [*POLICIES, *(f"nginx-{m}" for m in NGINX_METHODS)]
            policies = bench.compare(f"{args.load:.0%} load", kinds, workers, texts, arrivals)
            policies_ideal = _ideal(policies, arrivals, n)

            replicas = bench.compare(f"2 replicas, {args.load:.0%} load", [DEFAULT_POLICY, "nginx-least_conn"],
                                     workers, texts, arrivals, replicas=2)

            mixed = [slow, *workers[1:]]
            hetero_capacity = single_peak * (n - 1 + 1 / args.slow_factor)
            h_arrivals = poisson_arrivals(args.requests, args.load * hetero_capacity, seed=args.seed)
            hetero = bench.compare(f"one worker {args.slow_factor:g}x slower", [DEFAULT_POLICY, "least-loaded",
                                   "round-robin", "nginx-least_conn"], mixed, texts, h_arrivals)
            slow_id = httpx.get(f"{slow.url}/stats", timeout=5).json()["worker_id"]
            hetero_ideal = _ideal(hetero, h_arrivals, n, [args.slow_factor, *[1.0] * (n - 1)], slow_id,
                                  args.slow_factor)

            scaling = {}
            scale_texts = mixed_texts(max(4, int(single_peak * args.seconds)), seed=args.seed + 1)
            for k in range(1, n + 1):
                with fleet.balancers(DEFAULT_POLICY, workers[:k]) as urls:
                    scaling[k] = bench.closed(f"scaling: {k} workers", urls, scale_texts * k, 3 * k)

            sweep_runs: dict[float, dict[str, Run]] = {}
            sweep_ideal: dict[float, list[float]] = {}
            for load in sweep:
                count = max(8, int(load * capacity * args.seconds))
                s_texts = mixed_texts(count, seed=args.seed + 3)
                s_arrivals = poisson_arrivals(count, load * capacity, seed=args.seed + 3)
                sweep_runs[load] = bench.compare(f"load {load:.0%}", [DEFAULT_POLICY, "round-robin",
                                                 "nginx-least_conn"], workers, s_texts, s_arrivals)
                sweep_ideal[load] = _ideal(sweep_runs[load], s_arrivals, n)

            k_texts = mixed_texts(args.requests, seed=args.seed + 4)
            k_arrivals = poisson_arrivals(args.requests, 0.6 * capacity, seed=args.seed + 4)
            killed = bench.killed([DEFAULT_POLICY, "nginx-least_conn"], workers[: n - 1], k_texts, k_arrivals)
        finally:
            fleet.close()

    report = _report(args, seed, capacity, policies, policies_ideal, replicas, hetero, hetero_ideal, scaling,
                     sweep_runs, sweep_ideal, killed, out)
    _print(console, report)
    out.mkdir(parents=True, exist_ok=True)
    from .plots import plot_cluster

    report["plots"] = plot_cluster(report, policies, policies_ideal, hetero, hetero_ideal, killed, out)
    path = out / "cluster.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    console.print(f"wrote {path} and {', '.join(report['plots'])}")
    return report


def _mean_chars(seed: int) -> float:
    texts = mixed_texts(200, seed=seed)
    return sum(len(t) for t in texts) / len(texts)


def _summaries(runs: dict[Any, Run]) -> dict[str, Any]:
    return {str(k): r.summary() for k, r in runs.items()}


def _report(args: Any, seed: dict[str, Any], capacity: float, policies: dict[str, Run], policies_ideal: list[float],
            replicas: dict[str, Run], hetero: dict[str, Run], hetero_ideal: list[float], scaling: dict[int, Run],
            sweep_runs: dict[float, dict[str, Run]], sweep_ideal: dict[float, list[float]],
            killed: dict[str, Run], out: Path) -> dict[str, Any]:
    n = args.workers
    pol = _summaries(policies)
    rep = _summaries(replicas)
    ideal_row = _ideal_row(policies_ideal)
    router_json = out / "router.json"
    added = json.loads(router_json.read_text())["added_p50_ms"] if router_json.exists() else None
    no_fault = [*policies.values(), *replicas.values(), *hetero.values(), *scaling.values(),
                *(r for runs in sweep_runs.values() for r in runs.values())]
    no_fault_below_capacity = [*policies.values(), *replicas.values(), *hetero.values(), *scaling.values(),
                               *(r for load, runs in sweep_runs.items() if load <= 1.0 for r in runs.values())]

    def ratio(a: float, b: float) -> Optional[float]:
        return a / b if b else None

    targets = {
        "throughput_n_vs_1": ratio(seed["after"]["peak_req_per_s"], seed["before"]["peak_req_per_s"]),
        "throughput_fraction_of_ideal": ratio(seed["after"]["peak_req_per_s"], capacity),
        "p99_vs_round_robin": ratio(pol[DEFAULT_POLICY]["p99_s"], pol["round-robin"]["p99_s"]),
        "p99_vs_nginx_least_conn": ratio(pol[DEFAULT_POLICY]["p99_s"], pol["nginx-least_conn"]["p99_s"]),
        "p99_two_replicas_vs_two_nginx": ratio(rep[DEFAULT_POLICY]["p99_s"], rep["nginx-least_conn"]["p99_s"]),
        "p99_vs_ideal_central_queue": ratio(pol[DEFAULT_POLICY]["p99_s"], ideal_row["p99_s"]),
        "router_added_p50_ms": added,
        "failed_without_fault": sum(r.summary()["failed"] for r in no_fault_below_capacity),
        "failed_without_fault_over_capacity": sum(r.summary()["failed"] for r in no_fault)
        - sum(r.summary()["failed"] for r in no_fault_below_capacity),
    }
    return {
        "scenario": "cluster",
        "command": "tts-cluster bench cluster " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in _flags(args)),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "workers": n,
        "synthetic_service_s": {"base": args.base_seconds, "per_char": args.seconds_per_char},
        "ideal_capacity_req_per_s": capacity,
        "targets": targets,
        "seed_table": seed,
        "policies": {"load": args.load, "offered_req_per_s": args.load * capacity, "results": pol,
                     "ideal_central_queue": ideal_row},
        "two_replicas": {"load": args.load, "results": rep},
        "heterogeneous": {"slow_factor": args.slow_factor, "results": _summaries(hetero),
                          "ideal_central_queue": _ideal_row(hetero_ideal)},
        "scaling": {str(k): {"throughput": r.summary()["throughput"], "ideal": seed["before"]["peak_req_per_s"] * k,
                             "failed": r.summary()["failed"]} for k, r in scaling.items()},
        "load_sweep": {f"{load:g}": {**_summaries(runs), "ideal_central_queue": _ideal_row(sweep_ideal[load])}
                       for load, runs in sweep_runs.items()},
        "worker_killed": {k: {**r.summary(), "killed_at_s": r.extra["killed_at_s"]} for k, r in killed.items()},
        "latencies": {k: [round(s.latency, 4) for s in r.samples if 200 <= s.status < 300]
                      for k, r in policies.items()},
    }


def _flags(args: Any) -> list[tuple[str, Any]]:
    keys = ("workers", "base_seconds", "seconds_per_char", "queue", "load", "requests", "sweep", "seconds",
            "slow_factor", "seed")
    return [(k, getattr(args, k)) for k in keys]



def _shown(value: float, unit: str, key: str) -> str:
    return f"{value:.0%}" if key == "utilisation" else f"{value:.2f} {unit}"

def _print(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    seed = report["seed_table"]
    b, a = seed["before"], seed["after"]
    t = Table(title=f"the seed's table: 1 worker direct (before) vs {report['workers']} workers behind the router "
                    "(after), synthetic engine")
    for col in ("scenario", "before", "after", "gain"):
        t.add_column(col, justify="right")
    for name, key, unit, better_low in (("single request", "single_request_s", "s", True),
                                        ("10 concurrent requests", "concurrent_10_s", "s", True),
                                        ("20 concurrent requests", "concurrent_20_s", "s", True),
                                        ("peak throughput", "peak_req_per_s", "req/s", False),
                                        ("engine utilisation at peak", "utilisation", "", False)):
        gain = (b[key] / a[key] if better_low else a[key] / b[key]) if a[key] and b[key] else 0.0
        t.add_row(name, _shown(b[key], unit, key), _shown(a[key], unit, key), f"{gain:.2f}x")
    t.add_row("requests admitted at once", "unbounded", f"{a['admitted_at_once']} (then 503)", "")
    console.print(t)

    def runs_table(title: str, rows: dict[str, Any]) -> None:
        t = Table(title=title)
        for col in ("balancer", "req/s", "mean s", "p50 s", "p95 s", "p99 s", "ttfb p50 s", "failed", "retried"):
            t.add_column(col, justify="right")
        for name, r in rows.items():
            t.add_row(name, "" if r["throughput"] is None else f"{r['throughput']:.2f}", f"{r['mean_s']:.3f}",
                      f"{r['p50_s']:.3f}", f"{r['p95_s']:.3f}", f"{r['p99_s']:.3f}",
                      "" if "ttfb_p50_s" not in r else f"{r['ttfb_p50_s']:.3f}",
                      str(r["failed"]), "" if r.get("retried") is None else str(r["retried"]))
        console.print(t)

    pol = report["policies"]
    runs_table(f"open loop at {pol['load']:.0%} of the ideal capacity ({pol['offered_req_per_s']:.1f} req/s), "
               f"{report['workers']} workers", {**pol["results"], "ideal central queue": pol["ideal_central_queue"]})
    runs_table("two balancer replicas, same load", report["two_replicas"]["results"])
    het = report["heterogeneous"]
    runs_table(f"one worker {het['slow_factor']:g}x slower", {**het["results"], "ideal central queue":
                                                               het["ideal_central_queue"]})
    runs_table("a worker SIGKILLed a third of the way in (60% load)", report["worker_killed"])
    t = Table(title="targets (ratios from this run)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k, v in report["targets"].items():
        t.add_row(k, "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
    console.print(t)


