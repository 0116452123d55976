"""`tts-cluster bench batching`: one GPT-SoVITS worker, batching off against batching on.

The real GPT-SoVITS pipeline (upstream's text front end, T2S decoder and SoVITS decoder) on weights generated here
(`tests/support/gpt_sovits_weights.py`) with the real v2 T2S dimensions: 24 layers, 512 wide, 16 heads (random
values: speed depends on shapes, not values). Random weights rarely emit EOS, so every sentence decodes to the cap of
50 x --max-sec tokens; requests are of mixed length by their number of sentences (1, 2 or 4).

For each of --concurrency (1, 4, 8 and 16 by default), that many clients in a closed loop each send --rounds
requests (`streaming_mode=1`, so the first audio byte is the first sentence's), to a worker with batching off,
then to a fresh one with batching on (--max-batch), each after one warm-up request. Per run: T2S tokens/s (the
decoding stage's own speed: the worker's `decoded_tokens` over its `decoding_seconds` in /stats, prefill included),
audio tokens/s (end to end: the answers' audio, one v2 semantic token per 1280 samples at 32 kHz, over the run's
wall time), requests/s, p50/p95 latency and p50 time to first audio byte.

Targets (ratios from this one invocation): T2S tokens/s at 8 concurrent >= 5x batching off; requests/s at 8
concurrent >= 2.5x; p95 latency at 8 concurrent no worse than off; one request's latency within 10% of off.
Table on stdout, JSON in OUT/batching.json, plot in OUT/batching.png. `--device cuda` runs the same on a GPU (fp16,
as GPT-SoVITS uses it there).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx
import yaml

from tts_cli.processes import ServiceProcess, start_worker

from . import checkout
from .corpus import mixed_texts
from .stats import pct

GENERATOR = Path("tests") / "support" / "gpt_sovits_weights.py"  # in a checkout of the repository
SAMPLES_PER_TOKEN = 1280  # v2: 25 semantic tokens per second of 32 kHz audio
TARGETS = {"t2s_tokens_x": 5.0, "requests_x": 2.5, "p95_ratio": 1.0, "single_latency_ratio": 1.1}
MODES = ("off", "on")
MIN_REQUESTS = 4


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated whole numbers, e.g. 1,4,8,16") from None
    if not levels or any(n < 1 or n > 64 for n in levels):
        raise argparse.ArgumentTypeError(f"{text!r}: each level from 1 to 64")
    return sorted(set(levels))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=_levels, default=[1, 4, 8, 16], metavar="N,N,...",
                   help="concurrent clients per run [default 1,4,8,16]")
    p.add_argument("--rounds", type=int, default=2, choices=range(1, 21), metavar="1-20",
                   help="requests each client sends per run [default 2]")
    p.add_argument("--max-batch", type=int, default=16, choices=range(2, 65), metavar="2-64",
                   help="the batching worker's --max-batch [default 16]")
    p.add_argument("--t2s-layers", type=int, default=24, choices=range(1, 49), metavar="1-48",
                   help="T2S decoder layers of the generated weights [default 24, v2's]")
    p.add_argument("--max-sec", type=int, default=1, choices=range(1, 11), metavar="1-10",
                   help="the T2S max_sec: each sentence decodes 50 x this many tokens [default 1]")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the worker runs [default cpu]")
    p.add_argument("--gpt-sovits-root", type=Path, default=None, metavar="DIR",
                   help="a GPT-SoVITS checkout for both workers, as the images run it [default: the installed "
                   "distribution (make setup-gpt-sovits: gpt-sovits-cpufast, a CPU fork)]")
    p.add_argument("--vocoder-thread", action=argparse.BooleanOptionalAction, default=None,
                   help="the batching worker's --vocoder-thread: SoVITS on a second thread, overlapping the decode "
                   "loop [default: the worker's, on with CUDA, off on CPU]")
    p.add_argument("--weights", type=Path, default=None, metavar="DIR",
                   help="where the generated weights are kept and reused [default OUT/.gpt-sovits-weights]")
    p.add_argument("--quick", action="store_true",
                   help="a short run to check the benchmark itself: 2 layers, levels 1,2, one round")


@dataclass(frozen=True)
class Scenario:
    levels: list[int]
    rounds: int
    max_batch: int
    layers: int
    max_sec: int
    device: str
    vocoder_thread: Optional[bool] = None
    gpt_sovits_root: Optional[Path] = None

    @staticmethod
    def of(args: argparse.Namespace) -> "Scenario":
        if args.quick:
            return Scenario([1, 2], 1, 4, 2, 1, args.device, args.vocoder_thread, args.gpt_sovits_root)
        return Scenario(list(args.concurrency), args.rounds, args.max_batch, args.t2s_layers, args.max_sec,
                        args.device, args.vocoder_thread, args.gpt_sovits_root)


@dataclass
class Sample:
    status: int
    latency: float
    ttfb: Optional[float]
    samples: int


@dataclass
class Measured:
    concurrency: int
    wall: float
    samples: list[Sample] = field(default_factory=list)
    peak_batch: int = 0
    decoded_tokens: int = 0  # the worker's /stats counters over the run: its T2S stage's own work
    decoding_seconds: float = 0.0


def find_generator(where: Optional[list[Path]] = None) -> Path:
    """The weight generator, in the checkout this package runs from or the one the working directory is in."""
    found = checkout.find(GENERATOR, where)
    if found is None:
        places = ", ".join(str(r) for r in (checkout.roots() if where is None else where)[:2])
        raise SystemExit(f"bench batching: {GENERATOR} is in none of {places} (or above): run it from this "
                         "repository's checkout")
    return found


def weights(sc: Scenario, where: Path, progress: Any) -> Path:
    """The generated weight set for these shapes, made once and reused (a stamp names the shapes and the
    generator's version: a set an older generator made is made again)."""
    generator = find_generator()
    made_by = hashlib.sha256(generator.read_bytes()).hexdigest()[:12]
    stamp = f"layers={sc.layers} max_sec={sc.max_sec} generator={made_by}"
    marker = where / "bench-stamp.txt"
    if marker.is_file() and marker.read_text() == stamp and (where / "tts_infer.yaml").is_file():
        return where
    task = progress.add_task(f"generating GPT-SoVITS weights (layers={sc.layers} max_sec={sc.max_sec})", total=None)
    shutil.rmtree(where, ignore_errors=True)
    subprocess.run([sys.executable, str(generator), str(where), "--t2s-layers", str(sc.layers), "--max-sec",
                    str(sc.max_sec), "--nltk-data", str(where / "nltk_data")], check=True,
                   stdout=subprocess.DEVNULL)
    marker.write_text(stamp)
    progress.remove_task(task)
    return where


def _config(sc: Scenario, set_dir: Path, out: Path) -> Path:
    """tts_infer.yaml for the device: on a GPU, half precision as GPT-SoVITS runs there."""
    config = yaml.safe_load((set_dir / "tts_infer.yaml").read_text())
    block = config["custom"]
    block["device"] = sc.device
    block["is_half"] = sc.device == "cuda"
    path = out / "tts_infer.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _worker(sc: Scenario, mode: str, config: Path, voice_dir: Path, set_dir: Path, logs: Path) -> ServiceProcess:
    return start_worker(worker_flags(sc, mode, config, voice_dir), logs,
                        env={"NLTK_DATA": str(set_dir / "nltk_data")}, ready_timeout=900)


def worker_flags(sc: Scenario, mode: str, config: Path, voice_dir: Path) -> list[str]:
    """The flags of the worker for `mode` ("off": one request at a time; "on": batching)."""
    flags = ["--engine", "gpt-sovits", "-c", str(config), "--voice-dir", str(voice_dir), "--device", sc.device,
             "--num-warmup", "1", "--max-queue-size", str(max(64, max(sc.levels)))]
    if sc.device == "cpu":
        flags += ["--cpu-threads", str(os.cpu_count() or 1)]
    if sc.gpt_sovits_root is not None:
        flags += ["--gpt-sovits-root", str(sc.gpt_sovits_root.resolve())]
    if mode == "on":
        flags += ["--batching", "--max-batch", str(sc.max_batch), "--batch-wait-ms", "20"]
        if sc.vocoder_thread is not None:
            flags.append("--vocoder-thread" if sc.vocoder_thread else "--no-vocoder-thread")
    return flags


def _request(text: str, seed: int) -> dict[str, Any]:
    return {"text": text, "text_lang": "en", "ref_audio_path": "bench-ref.wav", "prompt_lang": "en",
            "prompt_text": "a test", "media_type": "raw", "streaming_mode": 1, "seed": seed,
            "text_split_method": "cut5", "fragment_interval": 0.01}


def requests_of(concurrency: int, rounds: int) -> int:
    """Requests in one run: `rounds` per client, and at least MIN_REQUESTS so a percentile means something."""
    return max(MIN_REQUESTS, concurrency * rounds)


async def _measure(url: str, texts: list[str], concurrency: int, rounds: int, progress: Any, label: str) -> Measured:
    count = requests_of(concurrency, rounds)
    task = progress.add_task(label, total=count)
    measured = Measured(concurrency, 0.0)
    queue = list(enumerate(texts[:count]))
    done = asyncio.Event()

    async def occupancy(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            try:
                stats = (await client.get(f"{url}/stats")).json()
                measured.peak_batch = max(measured.peak_batch, int(stats.get("batch_occupancy", 0)),
                                          int(stats.get("in_flight", 0)))
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)

    async with httpx.AsyncClient(timeout=1800) as client:

        async def one_client() -> None:
            while queue:
                seed, text = queue.pop(0)
                t0 = time.perf_counter()
                first: Optional[float] = None
                size = 0
                async with client.stream("POST", f"{url}/tts", json=_request(text, seed)) as r:
                    async for chunk in r.aiter_raw():
                        if chunk and first is None:
                            first = time.perf_counter() - t0
                        size += len(chunk)
                measured.samples.append(Sample(r.status_code, time.perf_counter() - t0, first, size // 2))
                progress.advance(task)

        before = (await client.get(f"{url}/stats")).json()
        watcher = asyncio.create_task(occupancy(client))
        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        measured.wall = time.perf_counter() - t0
        done.set()
        await watcher
        after = (await client.get(f"{url}/stats")).json()
        measured.decoded_tokens = int(after["decoded_tokens"] - before["decoded_tokens"])
        measured.decoding_seconds = float(after["decoding_seconds"] - before["decoding_seconds"])
    progress.remove_task(task)
    return measured


def row(m: Measured) -> dict[str, Any]:
    ok = [s for s in m.samples if s.status == 200]
    audio_tokens = sum(s.samples for s in ok) / SAMPLES_PER_TOKEN
    latencies = [s.latency for s in ok]
    return {
        "concurrency": m.concurrency, "requests": len(m.samples), "ok": len(ok), "wall_s": m.wall,
        "t2s_tokens": m.decoded_tokens, "t2s_seconds": m.decoding_seconds,
        "t2s_tokens_per_s": m.decoded_tokens / m.decoding_seconds if m.decoding_seconds else 0.0,
        "audio_tokens_per_s": audio_tokens / m.wall if m.wall else 0.0,
        "requests_per_s": len(ok) / m.wall if m.wall else 0.0,
        "p50_s": pct(latencies, 0.5), "p95_s": pct(latencies, 0.95),
        "ttfb_p50_s": pct([s.ttfb for s in ok if s.ttfb is not None], 0.5),
        "peak_in_engine": m.peak_batch,
    }


def targets(rows: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Each target's measured ratio and verdict; a level that was not run is reported as not measured."""
    off, on = rows["off"], rows["on"]
    out: dict[str, Any] = {}

    def ratio(level: int, key: str) -> Optional[float]:
        if level not in off or level not in on or not off[level][key]:
            return None
        return float(on[level][key] / off[level][key])

    # name -> (measured ratio, True when it meets the target)
    checks: dict[str, tuple[Optional[float], bool]] = {}
    for name, level, key, at_least in (("t2s_tokens_x", 8, "t2s_tokens_per_s", True),
                                       ("requests_x", 8, "requests_per_s", True),
                                       ("p95_ratio", 8, "p95_s", False),
                                       ("single_latency_ratio", 1, "p50_s", False)):
        value = ratio(level, key)
        meets = value is not None and (value >= TARGETS[name] if at_least else value <= TARGETS[name])
        checks[name] = (value, meets)
    for name, (value, meets) in checks.items():
        out[name] = {"target": TARGETS[name], "measured": value,
                     "verdict": "not measured" if value is None else ("PASS" if meets else "FAIL")}
    return out


def run(args: argparse.Namespace, console: Any, progress: Any, voice_dir: Path, out: Path) -> dict[str, Any]:
    sc = Scenario.of(args)
    out.mkdir(parents=True, exist_ok=True)
    set_dir = weights(sc, args.weights or out / ".gpt-sovits-weights" / f"layers{sc.layers}-sec{sc.max_sec}",
                      progress)
    shutil.copy(set_dir / "ref.wav", voice_dir / "bench-ref.wav")
    texts = mixed_texts(max(requests_of(level, sc.rounds) for level in sc.levels), seed=11)
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="tts-bench-batching-") as tmp:
        config = _config(sc, set_dir, Path(tmp))
        for mode in MODES:
            task = progress.add_task(f"batching {mode}: starting the worker", total=None)
            worker = _worker(sc, mode, config, voice_dir, set_dir, Path(tmp) / "logs")
            progress.remove_task(task)
            try:
                # Not counted: the first batched request allocates the decoder's KV cache, and torch picks kernels.
                asyncio.run(_measure(worker.url, texts, 1, 1, progress, f"batching {mode}: warm-up"))
                rows[mode] = {}
                for level in sc.levels:
                    m = asyncio.run(_measure(worker.url, texts, level, sc.rounds, progress,
                                             f"batching {mode}, {level} concurrent"))
                    rows[mode][level] = row(m)
            finally:
                worker.stop()
    report = {
        "scenario": "batching", "device": sc.device, "t2s_layers": sc.layers, "max_sec": sc.max_sec,
        "max_batch": sc.max_batch, "rounds": sc.rounds, "levels": sc.levels, "quick": bool(args.quick),
        "vocoder_thread": sc.vocoder_thread if sc.vocoder_thread is not None else sc.device == "cuda",
        "gpt_sovits_root": None if sc.gpt_sovits_root is None else str(sc.gpt_sovits_root),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": {mode: [rows[mode][level] for level in sc.levels] for mode in MODES},
        "targets": targets(rows),
    }
    (out / "batching.json").write_text(json.dumps(report, indent=2))
    try:
        from .plots import plot_batching

        report["plot"] = plot_batching(report, out / "batching.png")
    except ImportError:  # matplotlib is the bench extra's
        report["plot"] = None
    _print(console, report)
    return report


def _print(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"GPT-SoVITS worker, batching off vs on ({report['device']}, T2S {report['t2s_layers']} "
                        f"layers, max_batch {report['max_batch']})")
    for name in ("batching", "concurrent", "T2S tokens/s", "audio tokens/s", "requests/s", "p50 s", "p95 s",
                 "first byte p50 s", "most in engine", "ok"):
        table.add_column(name, justify="right")
    for mode in MODES:
        for r in report["runs"][mode]:
            table.add_row(mode, str(r["concurrency"]), f"{r['t2s_tokens_per_s']:.1f}",
                          f"{r['audio_tokens_per_s']:.1f}", f"{r['requests_per_s']:.3f}",
                          f"{r['p50_s']:.2f}", f"{r['p95_s']:.2f}", f"{r['ttfb_p50_s']:.2f}",
                          str(r["peak_in_engine"]), f"{r['ok']}/{r['requests']}")
    console.print(table)
    for name, t in report["targets"].items():
        measured = "-" if t["measured"] is None else f"{t['measured']:.2f}"
        console.print(f"{name}: {measured} (target {t['target']:g}) {t['verdict']}")
