"""`tts-cluster bench worker`: one worker's real-time factor and requests/s, and its HTTP + queue overhead.

Overhead is what a request costs beyond the engine: end-to-end latency at the client minus the engine time the worker
reports for that same request (`Server-Timing`), with one client so nothing queues. The engine is also called
directly in this process on the same texts (deterministic Piper: identical audio) for the RTF comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tts_cli.processes import start_worker

from .corpus import mixed_texts
from .stats import pct


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, default=30, help="requests per measurement [default 30]")
    p.add_argument("--concurrency", type=int, default=4, help="clients in the throughput run [default 4]")


def _direct(texts: list[str], progress: Any) -> dict[str, Any]:
    from tts_common.schemas import TTSRequest
    from tts_worker.engines.base import CancelToken, StreamMode, SynthesisParams
    from tts_worker.engines.piper_engine import PiperEngine

    engine = PiperEngine(None, deterministic=True)
    engine.load()
    engine.warmup(2)
    task = progress.add_task("engine, direct", total=len(texts))
    latencies, audio = [], 0.0
    for text in texts:
        req = TTSRequest(text=text, text_lang="en", prompt_lang="en", ref_audio_path="reference.wav")
        t0 = time.perf_counter()
        samples = sum(len(c) for c in engine.synthesize(SynthesisParams(req, StreamMode.OFF, Path()), CancelToken()))
        latencies.append(time.perf_counter() - t0)
        audio += samples / engine.sample_rate
        progress.advance(task)
    return {"latencies": latencies, "audio_seconds": audio}


async def _http(url: str, texts: list[str], concurrency: int, progress: Any, label: str) -> dict[str, Any]:
    task = progress.add_task(label, total=len(texts))
    latencies: list[float] = []
    engine_s: list[float] = []
    audio = 0.0
    statuses: dict[int, int] = {}
    queue = list(texts)
    async with httpx.AsyncClient(timeout=300) as client:

        async def one_client() -> None:
            nonlocal audio
            while queue:
                text = queue.pop()
                t0 = time.perf_counter()
                r = await client.post(
                    f"{url}/tts",
                    json={"text": text, "text_lang": "en", "ref_audio_path": "reference.wav", "prompt_lang": "en",
                          "media_type": "raw"},
                )
                latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                # one entry per request, aligned with `latencies` (0 when no engine time was reported)
                engine_s.append(_server_timing(r.headers.get("server-timing", ""), "engine"))
                if r.status_code == 200:
                    audio += len(r.content) / 2 / int(r.headers["x-sample-rate"])
                progress.advance(task)

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "engine": engine_s, "audio_seconds": audio, "wall": wall, "statuses": statuses}


def _server_timing(header: str, name: str) -> float:
    for part in header.split(","):
        key, _, dur = part.strip().partition(";dur=")
        if key == name and dur:
            return float(dur) / 1000
    return 0.0


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from tts_worker.reference import write_reference_clip

    console = Console()
    write_reference_clip(args.voice_dir)
    texts = mixed_texts(args.requests)
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as progress:
        boot = progress.add_task("starting worker", total=None)
        worker = start_worker(
            ["--engine", "piper", "--piper-deterministic", "--voice-dir", str(args.voice_dir),
             "--max-queue-size", str(max(10, args.concurrency * 2)), "--num-warmup", "2"],
            Path(tmp),
        )
        progress.remove_task(boot)
        try:
            serial = asyncio.run(_http(worker.url, texts, 1, progress, "worker HTTP, 1 client"))
            loaded = asyncio.run(
                _http(worker.url, texts, args.concurrency, progress, f"worker HTTP, {args.concurrency} clients")
            )
        finally:
            worker.stop()
        # After the worker has stopped, so the two never compete for the same cores.
        direct = _direct(texts, progress)

    d_sum, s_sum = sum(direct["latencies"]), sum(serial["latencies"])
    overhead = [total - engine for total, engine in zip(serial["latencies"], serial["engine"], strict=True)]
    result = {
        "scenario": "worker",
        "engine": "piper (en_US joe medium, deterministic)",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version()},
        "requests": args.requests,
        "concurrency": args.concurrency,
        "direct": {"rtf": d_sum / direct["audio_seconds"], "p50_s": pct(direct["latencies"], 0.5),
                   "req_per_s": len(texts) / d_sum},
        "worker_serial": {"rtf": s_sum / serial["audio_seconds"], "p50_s": pct(serial["latencies"], 0.5),
                          "p99_s": pct(serial["latencies"], 0.99), "req_per_s": len(texts) / serial["wall"],
                          "statuses": serial["statuses"]},
        "worker_concurrent": {"req_per_s": len(texts) / loaded["wall"], "p50_s": pct(loaded["latencies"], 0.5),
                              "p99_s": pct(loaded["latencies"], 0.99), "statuses": loaded["statuses"],
                              "audio_seconds_per_s": loaded["audio_seconds"] / loaded["wall"]},
        "overhead_s": {"p50": pct(overhead, 0.5), "p99": pct(overhead, 0.99),
                       "mean": statistics.fmean(overhead), "ratio_worker_to_direct": s_sum / d_sum,
                       "worker_engine_p50_s": pct(serial["engine"], 0.5)},
    }
    table = Table(title=f"tts-cluster bench worker ({args.requests} mixed Harvard texts)")
    for col in ("measure", "RTF", "req/s", "p50 s", "p99 s"):
        table.add_column(col, justify="right")
    table.add_row("engine, direct", f"{result['direct']['rtf']:.3f}", f"{result['direct']['req_per_s']:.2f}",
                  f"{result['direct']['p50_s']:.3f}", "")
    ws = result["worker_serial"]
    table.add_row("worker, 1 client", f"{ws['rtf']:.3f}", f"{ws['req_per_s']:.2f}", f"{ws['p50_s']:.3f}",
                  f"{ws['p99_s']:.3f}")
    wc = result["worker_concurrent"]
    table.add_row(f"worker, {args.concurrency} clients", "", f"{wc['req_per_s']:.2f}", f"{wc['p50_s']:.3f}",
                  f"{wc['p99_s']:.3f}")
    ov = result["overhead_s"]
    table.add_row("worker overhead (HTTP+queue)", "", "", f"{ov['p50'] * 1000:.1f} ms", f"{ov['p99'] * 1000:.1f} ms")
    console.print(table)
    console.print(f"worker/direct time ratio: {ov['ratio_worker_to_direct']:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "worker.json"
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    console.print(f"wrote {path}")
    return 0
