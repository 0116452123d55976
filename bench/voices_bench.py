"""`tts-cluster bench voices`: many voices on few slots, voice-aware routing against voice-blind least-work.

The scenario: a catalog of --voices synthetic voices (distinct tones) whose popularity follows
Zipf's law (the k-th most popular is asked for in proportion to 1/k^s), served by --workers synthetic workers that
each hold at most --max-loaded-voices of them (least recently used evicted). Loading a voice takes
--voice-load-seconds of engine time (a GPT-SoVITS model pair's stand-in), several times a request's service time,
and holds up that worker's queue meanwhile.

Three kinds of run, each on a fresh cluster (workers restarted, so every cache starts cold alike), each a warm-up
(not counted) then the measured phase, both open loop: seeded Poisson arrivals at --load of the capacity, then the
same at --high-load. At each load one-voice and voice-aware run --repeats times in turn (the p99 ratio is taken
within each pair, and its median reported with each one), voice-blind once.

  one-voice    every request in the default voice, which every worker holds from start: nothing ever loads.
               The baseline: the same load on a cluster of one voice.
  voice-aware  voices drawn from the Zipf mix; least-work sends a voice only where it is loaded while any worker
               has it, and the router copies a voice under sustained pressure to another worker in the background
               (router --voice-affinity).
  voice-blind  the same texts, arrival times and voices; least-work ignores voices (router --no-voice-affinity),
               so a worker loads whatever it is sent.

capacity = workers / (base + per_char x mean text length): the engine seconds of one request without any load.
Per run: p50/p99 of answered requests, errors, voice loads per 1000 answered requests (background loads included),
the share of answered requests that waited for a load (their own or one queued before them), background loads, and
the requests that waited for their own voice's load while another worker held it (the router marks those it sends
so), from the workers' /stats counters (`voice_loads`, `voice_load_waits`, `voice_background_loads`,
`voice_load_waits_held_elsewhere`) over the measured phase. Refused requests never reach an engine, so they are
left out of both denominators: a cluster that refuses work must not look as if it loaded less.
Targets (ratios from this one invocation, at each load): p99 voice-aware / one-voice <= 1.3 in every repeat (the
median is reported with each); loads per 1000 voice-blind / voice-aware >= 5 (the repeats' loads summed); no
voice-aware request waited for a load while another worker held its voice. Table on stdout, JSON in
OUT/voices.json, plot in OUT/voices.png (the first load's median repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import httpx
import yaml

from tts_cli.processes import ServiceProcess, start_router, start_worker

from .corpus import mixed_texts
from .loadgen import LoadGenerator, Run, poisson_arrivals

P99_TARGET = 1.3  # p99 voice-aware / p99 one-voice, at most
LOADS_TARGET = 5.0  # loads per 1000 voice-blind / voice-aware, at least
RUNS = ("one-voice", "voice-aware", "voice-blind")
# The workers' /stats counters read before and after each phase.
COUNTERS = ("voice_loads", "voice_load_waits", "voice_own_load_waits", "voice_load_waits_held_elsewhere",
            "voice_background_loads", "processed", "failed", "rejected", "cancelled")


def _bounded(kind: type[int] | type[float], low: float, high: float) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text}: must be between {low:g} and {high:g}")
        return value

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="a few seconds of load per run (the test's run): --seconds 3, --warmup-seconds 1.5")
    p.add_argument("--workers", metavar="N", type=_bounded(int, 1, 32), default=4, help="synthetic workers [4]")
    p.add_argument("--voices", metavar="N", type=_bounded(int, 2, 256), default=8,
                   help="synthetic voices in the catalog [8]")
    p.add_argument("--max-loaded-voices", metavar="N", type=_bounded(int, 1, 64), default=3,
                   help="catalog voices each worker holds at most (least recently used evicted) [3]")
    p.add_argument("--voice-load-seconds", metavar="S", type=_bounded(float, 0, 60), default=1.0,
                   help="engine seconds one voice load takes [1.0; about 6x a request's mean service time]")
    p.add_argument("--base-seconds", metavar="S", type=_bounded(float, 0, 10), default=0.05,
                   help="synthetic service time per request [0.05]")
    p.add_argument("--seconds-per-char", metavar="S", type=_bounded(float, 0, 1), default=0.002,
                   help="synthetic service time per character [0.002; the corpus mix averages ~0.17 s a request]")
    p.add_argument("--load", metavar="F", type=_bounded(float, 0.01, 2), default=0.7,
                   help="offered load as a fraction of the capacity (formula above) [0.7]")
    p.add_argument("--zipf", metavar="S", type=_bounded(float, 0, 5), default=1.1,
                   help="Zipf exponent s of voice popularity (0: uniform) [1.1]")
    p.add_argument("--seconds", metavar="S", type=_bounded(float, 0.5, 3600), default=None,
                   help="measured open-loop load per run, in seconds [40; --quick 3]")
    p.add_argument("--warmup-seconds", metavar="S", type=_bounded(float, 0, 3600), default=None,
                   help="load before each measured phase, not counted: fills caches, measures speeds [10; "
                   "--quick 1.5]")
    p.add_argument("--high-load", metavar="F", type=_bounded(float, 0, 2), default=None,
                   help="a second load, run the same way after --load (0: none) [0.85; --quick 0]")
    p.add_argument("--repeats", metavar="N", type=_bounded(int, 1, 20), default=None,
                   help="one-voice and voice-aware pairs per load; the p99 ratio's median is reported with each "
                   "[3; --quick 1]")
    p.add_argument("--seed", metavar="N", type=int, default=7, help="texts, arrival times and voices [7]")


@dataclass(frozen=True)
class Scenario:
    quick: bool
    workers: int
    voices: int
    max_loaded: int
    load_seconds: float
    base_seconds: float
    seconds_per_char: float
    load: float
    zipf: float
    seconds: float
    warmup_seconds: float
    seed: int
    high_load: float = 0.0
    repeats: int = 1

    @staticmethod
    def of(args: argparse.Namespace) -> "Scenario":
        q = bool(args.quick)
        seconds = args.seconds if args.seconds is not None else (3.0 if q else 40.0)
        warmup = args.warmup_seconds if args.warmup_seconds is not None else (1.5 if q else 10.0)
        high = args.high_load if args.high_load is not None else (0.0 if q else 0.85)
        repeats = args.repeats if args.repeats is not None else (1 if q else 3)
        return Scenario(q, args.workers, args.voices, args.max_loaded_voices, args.voice_load_seconds,
                        args.base_seconds, args.seconds_per_char, args.load, args.zipf, seconds, warmup, args.seed,
                        high, repeats)

    def at(self, load: float) -> "Scenario":
        return replace(self, load=load)

    @property
    def loads(self) -> list[float]:
        return [self.load] + ([self.high_load] if self.high_load > 0 and self.high_load != self.load else [])

    @property
    def names(self) -> list[str]:
        return [f"v{k}" for k in range(self.voices)]

    @property
    def mean_chars(self) -> float:
        # From a long stretch of the same seeded mix the runs draw from (their texts are a prefix of it).
        texts = mixed_texts(1000, seed=self.seed)
        return sum(len(t) for t in texts) / len(texts)

    @property
    def mean_service(self) -> float:
        return self.base_seconds + self.seconds_per_char * self.mean_chars

    @property
    def capacity(self) -> float:
        return self.workers / self.mean_service

    @property
    def rate(self) -> float:
        return self.load * self.capacity

    def formula(self) -> str:
        return (f"capacity = {self.workers} workers / ({self.base_seconds:g} s + {self.seconds_per_char:g} s/char x "
                f"{self.mean_chars:.1f} chars) = {self.capacity:.2f} req/s; offered {self.load:.0%} = "
                f"{self.rate:.2f} req/s")

    def flags(self) -> str:
        return (f"--workers {self.workers} --voices {self.voices} --max-loaded-voices {self.max_loaded} "
                f"--voice-load-seconds {self.load_seconds:g} --base-seconds {self.base_seconds:g} "
                f"--seconds-per-char {self.seconds_per_char:g} --load {self.load:g} --zipf {self.zipf:g} "
                f"--seconds {self.seconds:g} --warmup-seconds {self.warmup_seconds:g} --seed {self.seed} "
                f"--high-load {self.high_load:g} --repeats {self.repeats}")


@dataclass(frozen=True)
class Load:
    """One open-loop phase's requests: what is said, when, in which voice (None: the default voice)."""

    texts: list[str]
    arrivals: list[float]
    voices: list[Optional[str]]

    @staticmethod
    def of(sc: Scenario, seconds: float, seed: int, one_voice: bool) -> "Load":
        count = max(8, round(sc.rate * seconds))
        voices: list[Optional[str]] = [None] * count
        if not one_voice:
            voices = list(zipf_voices(sc.names, sc.zipf, count, seed))
        return Load(mixed_texts(count, seed=seed), poisson_arrivals(count, sc.rate, seed=seed), voices)


def zipf_voices(names: Sequence[str], s: float, count: int, seed: int) -> list[str]:
    """`count` voices drawn independently, names[k] with probability proportional to 1 / (k + 1)^s."""
    rng = random.Random(seed)
    return rng.choices(list(names), weights=[1.0 / (k + 1) ** s for k in range(len(names))], k=count)


def catalog(names: Sequence[str]) -> dict[str, Any]:
    """voices.yaml: one synthetic voice per name, tones spread over 150-3000 Hz so each can be told by ear."""
    step = 2850.0 / max(1, len(names) - 1)
    return {"voices": [{"name": n, "synthetic": {"tone_hz": round(150 + k * step, 1), "speed": 1.0}}
                       for k, n in enumerate(names)]}


@dataclass
class Measured:
    """One run: its measured phase, and the workers' counters summed over the phase (and over the warm-up)."""

    name: str
    affinity: bool
    run: Run
    counters: dict[str, int]
    warmup: Run
    warmup_counters: dict[str, int]
    loaded_after: dict[str, list[str]]  # worker id -> voices held at the end, least recently used first
    timeline: list[tuple[float, int, int]]  # (seconds into the phase, loads since its start, requests admitted)


def _stats(urls: Sequence[str], timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every worker's /stats once none has anything queued or running, so the counters cover every request the
    phase sent (they are counted as each job finishes)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while True:
            stats = [client.get(f"{u}/stats").json() for u in urls]
            if all(s["queue_depth"] == 0 and s["in_flight"] == 0 for s in stats) or time.monotonic() > deadline:
                return stats
            time.sleep(0.05)


@contextmanager
def _timeline(urls: Sequence[str], loads_before: int, every: float = 0.5) -> Iterator[list[tuple[float, int, int]]]:
    """The workers' loads and admitted requests, sampled on a thread while a phase runs: shows whether and when
    loads snowball (a load holds up a queue, which makes loading elsewhere look cheaper to the next request)."""
    points: list[tuple[float, int, int]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        with httpx.Client(timeout=2) as client:
            while True:
                try:
                    stats = [client.get(f"{u}/stats").json() for u in urls]
                    points.append((round(time.monotonic() - t0, 2),
                                   sum(int(s.get("voice_loads", 0)) for s in stats) - loads_before,
                                   sum(int(s["queue_depth"]) + int(s["in_flight"]) for s in stats)))
                except httpx.HTTPError:
                    pass  # a missed sample leaves a gap, nothing worse
                if stop.wait(every):
                    return

    thread = threading.Thread(target=sample, name="voices-timeline", daemon=True)
    thread.start()
    try:
        yield points
    finally:
        stop.set()
        thread.join()


def _sum(stats: Sequence[dict[str, Any]]) -> dict[str, int]:
    return {k: sum(int(s.get(k, 0)) for s in stats) for k in COUNTERS}


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in COUNTERS}


class Bench:
    def __init__(self, sc: Scenario, progress: Any, voice_dir: Path, catalog_path: Path, logs: Path) -> None:
        self.sc, self.progress, self.voice_dir, self.catalog_path, self.logs = (sc, progress, voice_dir,
                                                                                 catalog_path, logs)

    @contextmanager
    def cluster(self, affinity: bool) -> Iterator[tuple[str, list[str]]]:
        """Fresh workers (started side by side) and a router; yields the router's URL and the workers'."""
        sc = self.sc
        args = ["--engine", "synthetic", "--voice-dir", str(self.voice_dir), "--voices", str(self.catalog_path),
                "--max-loaded-voices", str(sc.max_loaded), "--synthetic-voice-load-seconds", str(sc.load_seconds),
                "--synthetic-base-seconds", str(sc.base_seconds),
                "--synthetic-seconds-per-char", str(sc.seconds_per_char), "--log-level", "warning"]
        started: list[ServiceProcess] = []
        boot = self.progress.add_task(f"starting {sc.workers} workers and a router", total=None)
        try:
            with ThreadPoolExecutor(sc.workers) as pool:
                futures = [pool.submit(start_worker, args, self.logs) for _ in range(sc.workers)]
            failures = []
            for f in futures:  # every start has finished: keep the ones that came up, so all are stopped
                try:
                    started.append(f.result())
                except RuntimeError as exc:
                    failures.append(exc)
            if failures:
                raise failures[0]
            workers = [w.url for w in started]
            router = start_router([*(f for u in workers for f in ("--worker", u)), "--policy", "least-work",
                                   "--voice-affinity" if affinity else "--no-voice-affinity",
                                   "--log-level", "warning"], self.logs)
            started.insert(0, router)  # stopped first, so it sends nothing to a stopping worker
            self.progress.update(boot, visible=False)
            yield router.url, workers
        finally:
            self.progress.update(boot, visible=False)
            for p in started:
                p.stop()

    def phase(self, label: str, url: str, load: Load) -> Run:
        task = self.progress.add_task(label, total=len(load.texts))
        gen = LoadGenerator([url], on_done=lambda _s: self.progress.advance(task))
        run = asyncio.run(gen.open_loop(load.texts, load.arrivals, label, voices=load.voices))
        self.progress.update(task, visible=False)
        return run

    def measure(self, name: str, affinity: bool, warmup: Optional[Load], load: Load) -> Measured:
        with self.cluster(affinity) as (url, workers):
            start = _sum(_stats(workers))
            warm = self.phase(f"{name}: warm-up", url, warmup) if warmup else Run(f"{name}: no warm-up", [], 0.0)
            before = _sum(_stats(workers))
            with _timeline(workers, before["voice_loads"]) as points:
                run = self.phase(f"{name}: {self.sc.seconds:g} s at {self.sc.load:.0%} load", url, load)
            final = _stats(workers)
            return Measured(name, affinity, run, _delta(_sum(final), before), warm, _delta(before, start),
                            {s["worker_id"]: list(s.get("loaded_voices", [])) for s in final}, points)


def run(args: argparse.Namespace, console: Any, progress: Any, voice_dir: Path, out: Path) -> dict[str, Any]:
    sc = Scenario.of(args)
    levels: list[dict[str, Any]] = []
    plotted: dict[str, Run] = {}
    with tempfile.TemporaryDirectory() as tmp:
        catalog_path = Path(tmp) / "voices.yaml"
        catalog_path.write_text(yaml.safe_dump(catalog(sc.names), sort_keys=False), encoding="utf-8")
        for level in sc.loads:
            lsc = sc.at(level)
            # The warm-up draws from other seeds than the measured phase, the same ones in every run.
            loads = {one: (Load.of(lsc, lsc.warmup_seconds, lsc.seed + 1, one) if lsc.warmup_seconds > 0 else None,
                           Load.of(lsc, lsc.seconds, lsc.seed, one)) for one in (True, False)}
            bench = Bench(lsc, progress, voice_dir, catalog_path, Path(tmp) / "logs")
            pairs: list[dict[str, Measured]] = []
            for _ in range(lsc.repeats):  # in turn, so a machine's slow minute falls on both sides of a ratio
                pairs.append({name: bench.measure(name, True, *loads[name == "one-voice"])
                              for name in ("one-voice", "voice-aware")})
            blind = bench.measure("voice-blind", False, *loads[False])
            levels.append(_level(lsc, pairs, blind, loads[False][1]))
            if not plotted:
                pick = pairs[levels[0]["median_repeat"]]
                plotted = {"one-voice": pick["one-voice"].run, "voice-aware": pick["voice-aware"].run,
                           "voice-blind": blind.run}

    report = _report(sc, levels)
    _print(console, report)
    out.mkdir(parents=True, exist_ok=True)
    from .plots import plot_voices

    report["plots"] = [plot_voices(report, plotted, out / "voices.png")]
    path = out / "voices.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    console.print(f"wrote {path} and {', '.join(report['plots'])}")
    return report


def median_index(values: Sequence[Optional[float]]) -> int:
    """The index of the median value (the lower one of an even count); a missing value counts as the highest."""
    order = sorted(range(len(values)), key=lambda i: (values[i] is None, values[i] or 0.0))
    return order[(len(order) - 1) // 2]


def _ratio(top: Optional[float], bottom: Optional[float]) -> Optional[float]:
    return top / bottom if top is not None and bottom else None


def _level(sc: Scenario, pairs: Sequence[dict[str, Measured]], blind: Measured, load: Load) -> dict[str, Any]:
    """One load's results: each repeat's pair, the median repeat's rows as `runs` (with voice-blind), targets."""
    repeats = [{k: _row(sc, m) for k, m in pair.items()} for pair in pairs]
    ratios = [_ratio(r["voice-aware"]["p99_s"], r["one-voice"]["p99_s"]) for r in repeats]
    m = median_index(ratios)
    blind_row = _row(sc, blind)
    runs = {**repeats[m], "voice-blind": blind_row}
    chosen = {**pairs[m], "voice-blind": blind}
    asked = [v for v in load.voices if v is not None]
    return {
        "load": sc.load,
        "offered_req_per_s": sc.rate,
        "capacity_formula": sc.formula(),
        "requests_per_run": len(load.texts),
        "voice_shares": {n: asked.count(n) / len(asked) for n in sc.names},
        "median_repeat": m,
        "repeats": [{"p99_ratio": ratio, **r} for ratio, r in zip(ratios, repeats, strict=True)],
        "runs": runs,
        "targets": _targets(repeats, ratios, blind_row),
        "latencies": {k: [round(x.latency, 4) for x in c.run.samples if 200 <= x.status < 300]
                      for k, c in chosen.items()},
        "timeline": {k: {"fields": ["seconds", "voice_loads_so_far", "admitted"], "points": c.timeline}
                     for k, c in chosen.items()},
    }


def _per(count: int, answered: int, scale: float) -> Optional[float]:
    return scale * count / answered if answered else None


def _row(sc: Scenario, m: Measured) -> dict[str, Any]:
    s = m.run.summary()
    c = m.counters
    return {
        **s,
        "routing": "voice-aware" if m.affinity else "voice-blind",  # always least-work
        "voices_asked": "default only" if m.name == "one-voice" else f"{sc.voices}, Zipf s={sc.zipf:g}",
        "voice_loads": c["voice_loads"],
        "voice_load_waits": c["voice_load_waits"],
        "background_loads": c["voice_background_loads"],
        "waited_held_elsewhere": c["voice_load_waits_held_elsewhere"],
        "loads_per_1000": _per(c["voice_loads"], s["ok"], 1000.0),
        "waited_share": _per(c["voice_load_waits"], s["ok"], 1.0),
        "worker_counters": c,
        "warmup": {"requests": len(m.warmup.samples), "failed": m.warmup.summary()["failed"],
                   "voice_loads": m.warmup_counters["voice_loads"]},
        "loaded_voices_after": m.loaded_after,
    }


def _targets(repeats: Sequence[dict[str, dict[str, Any]]], ratios: Sequence[Optional[float]],
             blind: dict[str, Any]) -> dict[str, Any]:
    """Each target over every repeat (it passes only if each repeat meets it), its median reported as the value."""
    m = median_index(ratios)
    lb = blind["loads_per_1000"]
    # Voice-aware loading nothing at all leaves no finite ratio: any load voice-blind made meets the target.
    loads = [_ratio(lb, r["voice-aware"]["loads_per_1000"]) for r in repeats]
    nothing = [r["voice-aware"]["loads_per_1000"] == 0 for r in repeats]
    met = [x >= LOADS_TARGET if x is not None else bool(n and lb) for x, n in zip(loads, nothing, strict=True)]
    present = [x for x in loads if x is not None]
    ratio: dict[str, Any] = {"value": statistics.median(present) if present else None, "each": loads,
                             "target": f">= {LOADS_TARGET:g}", "pass": all(met)}
    if not present:
        ratio["note"] = "voice-aware loaded nothing" if all(nothing) else "no request answered"
    waited = [int(r["voice-aware"]["waited_held_elsewhere"]) for r in repeats]
    return {
        "p99_voice_aware_vs_one_voice": {"value": ratios[m], "each": list(ratios), "target": f"<= {P99_TARGET:g}",
                                         "pass": all(x is not None and x <= P99_TARGET for x in ratios)},
        "loads_voice_blind_vs_voice_aware": ratio,
        "waited_for_a_load_held_elsewhere": {"value": sum(waited), "each": waited, "target": "0",
                                              "pass": sum(waited) == 0},
    }


def _report(sc: Scenario, levels: list[dict[str, Any]]) -> dict[str, Any]:
    first = levels[0]
    return {
        "scenario": "voices",
        "command": f"tts-cluster bench voices {sc.flags()}",
        "quick": sc.quick,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "workers": sc.workers,
        "voices": sc.names,
        "max_loaded_voices": sc.max_loaded,
        "voice_load_seconds": sc.load_seconds,
        "zipf_s": sc.zipf,
        "synthetic_service_s": {"base": sc.base_seconds, "per_char": sc.seconds_per_char,
                                "mean_chars": sc.mean_chars, "mean": sc.mean_service},
        "capacity_req_per_s": sc.capacity,
        "seconds": sc.seconds,
        "warmup_seconds": sc.warmup_seconds,
        "repeats": sc.repeats,
        # The first load's results at the top (what the plot shows); every load's, that one included, in `levels`.
        **{k: first[k] for k in ("load", "offered_req_per_s", "capacity_formula", "requests_per_run", "voice_shares",
                                 "median_repeat", "runs", "targets", "latencies", "timeline")},
        "levels": levels,
    }


def _fmt(value: Optional[float], spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _print(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    for level in report["levels"]:
        t = Table(title=f"{len(report['voices'])} voices (Zipf s={report['zipf_s']:g}), {report['workers']} workers "
                        f"holding at most {report['max_loaded_voices']} each, a voice load "
                        f"{report['voice_load_seconds']:g} s; open loop at {level['load']:.0%} load, "
                        f"{report['seconds']:g} s measured after {report['warmup_seconds']:g} s warm-up",
                  caption=level["capacity_formula"])
        for col in ("run", "least-work", "voices", "requests", "errors", "p50 s", "p99 s", "voice loads",
                    "loads / 1000", "waited for a load", "background loads", "waited, held elsewhere"):
            # The run's name whole, however narrow the terminal: it says which repeat a row is.
            t.add_column(col, justify="left" if col in ("run", "least-work", "voices") else "right",
                         no_wrap=col == "run")
        rows = [(f"{name} #{i + 1}", rep[name]) for i, rep in enumerate(level["repeats"])
                for name in ("one-voice", "voice-aware")] + [("voice-blind", level["runs"]["voice-blind"])]
        for name, r in rows:
            t.add_row(name, r["routing"], r["voices_asked"], str(r["requests"]), str(r["failed"]),
                      f"{r['p50_s']:.3f}", f"{r['p99_s']:.3f}", str(r["voice_loads"]),
                      _fmt(r["loads_per_1000"], ".1f"), _fmt(r["waited_share"], ".1%"), str(r["background_loads"]),
                      str(r["waited_held_elsewhere"]))
        console.print(t)
        t = Table(title=f"targets at {level['load']:.0%} load (each repeat must meet them; the value is the median)")
        for col in ("measure", "value", "each repeat", "target", "result"):
            t.add_column(col, justify="left" if col == "measure" else "right")
        for name, label, spec in (
                ("p99_voice_aware_vs_one_voice", "p99 voice-aware / p99 one-voice", ".2f"),
                ("loads_voice_blind_vs_voice_aware", "loads per 1000: voice-blind / voice-aware", ".2f"),
                ("waited_for_a_load_held_elsewhere", "waited for a load while another worker held the voice", "d")):
            g = level["targets"][name]
            suffix = "x" if spec != "d" else ""
            value = _fmt(g["value"], spec) + suffix if g["value"] is not None else g.get("note", "n/a")
            each = ", ".join(_fmt(x, spec) + suffix if x is not None else "n/a" for x in g["each"])
            t.add_row(label, value, each, g["target"], "PASS" if g["pass"] else "MISS")
        console.print(t)
