"""`tts-cluster bench router`: what the router adds. A zero-time synthetic engine leaves only HTTP, routing and
streaming: the added latency of a tiny request (router minus direct, interleaved so drift hits both alike), next to
what nginx adds as the same hop on the same machine (the floor a C proxy sets here), and requests/s through a router
pinned to one core, next to the worker's own ceiling on another core."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tts_cli.processes import start_router, start_worker

from .nginx import Nginx
from .stats import pct

TINY = {"text": "Hi.", "text_lang": "en", "prompt_lang": "en", "ref_audio_path": "reference.wav", "media_type": "raw"}
# A streamed answer of several chunks: what a client hears first is the first chunk (the 44-byte wav header).
STREAMED = {**TINY, "text": "One. Two. Three. Four.", "media_type": "wav", "streaming_mode": 1}


def _first_byte(client: httpx.Client, url: str) -> float:
    """Seconds until the first chunk of a streamed answer arrives (the rest is read, not timed)."""
    t0 = time.perf_counter()
    with client.stream("POST", f"{url}/tts", json=STREAMED) as r:
        r.raise_for_status()
        chunks = r.iter_raw()
        next(chunks)
        first = time.perf_counter() - t0
        for _ in chunks:
            pass
    return first


def add_arguments(p: Any) -> None:
    p.add_argument("--samples", type=int, default=300, help="tiny requests for the added-latency measure")
    p.add_argument("--ceiling-requests", type=int, default=2000, help="requests for the req/s ceiling")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients for the ceiling")


def _pin(pid: int, core: int) -> bool:
    try:
        os.sched_setaffinity(pid, {core % (os.cpu_count() or 1)})
        return True
    except (AttributeError, OSError):
        return False


async def _ceiling(url: str, requests: int, clients: int, progress: Any, label: str) -> float:
    task = progress.add_task(label, total=requests)
    left = iter(range(requests))
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as client:

        async def user() -> None:
            for _ in left:
                r = await client.post(f"{url}/tts", json=TINY)
                r.raise_for_status()
                progress.advance(task)

        t0 = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(clients)))
        return requests / (time.perf_counter() - t0)


def run(args: Any, console: Any, progress: Any, voice_dir: Path, out: Path) -> dict[str, Any]:
    from rich.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        worker = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--synthetic-base-seconds", "0",
                               "--synthetic-seconds-per-char", "0", "--max-queue-size", "1000",
                               "--log-level", "warning"], logs)
        router = start_router(["--worker", worker.url, "--log-level", "warning", "--poll-interval", "0.1"], logs)
        nginx = Nginx([worker.url], "round-robin", logs)
        pinned = _pin(router.proc.pid, 0) and _pin(worker.proc.pid, 1)
        try:
            paths = {"direct": worker.url, "router": router.url, "nginx": nginx.url}
            lat: dict[str, list[float]] = {k: [] for k in paths}
            task = progress.add_task("tiny requests: direct, routed, through nginx", total=args.samples)
            with httpx.Client(timeout=30) as client:
                for _ in range(20):  # warm every connection path
                    for url in paths.values():
                        client.post(f"{url}/tts", json=TINY)
                for _ in range(args.samples):
                    for name, url in paths.items():
                        t0 = time.perf_counter()
                        client.post(f"{url}/tts", json=TINY).raise_for_status()
                        lat[name].append(time.perf_counter() - t0)
                    progress.advance(task)
                ttfb: dict[str, list[float]] = {"direct": [], "router": []}
                task = progress.add_task("streamed: time to first byte, direct and routed", total=args.samples)
                for _ in range(args.samples):
                    for name in ttfb:
                        ttfb[name].append(_first_byte(client, paths[name]))
                    progress.advance(task)
            direct, routed, proxied = lat["direct"], lat["router"], lat["nginx"]
            worker_ceiling = asyncio.run(_ceiling(worker.url, args.ceiling_requests, args.clients, progress,
                                                  "worker ceiling"))
            router_ceiling = asyncio.run(_ceiling(router.url, args.ceiling_requests, args.clients, progress,
                                                  "router ceiling"))
        finally:
            nginx.stop()
            router.stop()
            worker.stop()
    report = {
        "scenario": "router",
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "pinned_to_one_core_each": pinned,
        "direct_p50_ms": pct(direct, 0.5) * 1000, "direct_p99_ms": pct(direct, 0.99) * 1000,
        "routed_p50_ms": pct(routed, 0.5) * 1000, "routed_p99_ms": pct(routed, 0.99) * 1000,
        "added_p50_ms": (pct(routed, 0.5) - pct(direct, 0.5)) * 1000,
        "added_p99_ms": (pct(routed, 0.99) - pct(direct, 0.99)) * 1000,
        "nginx_p50_ms": pct(proxied, 0.5) * 1000, "nginx_p99_ms": pct(proxied, 0.99) * 1000,
        "nginx_added_p50_ms": (pct(proxied, 0.5) - pct(direct, 0.5)) * 1000,
        "nginx_added_p99_ms": (pct(proxied, 0.99) - pct(direct, 0.99)) * 1000,
        "stream_ttfb_direct_p50_ms": pct(ttfb["direct"], 0.5) * 1000,
        "stream_ttfb_routed_p50_ms": pct(ttfb["router"], 0.5) * 1000,
        "stream_ttfb_added_p50_ms": (pct(ttfb["router"], 0.5) - pct(ttfb["direct"], 0.5)) * 1000,
        "stream_ttfb_added_p99_ms": (pct(ttfb["router"], 0.99) - pct(ttfb["direct"], 0.99)) * 1000,
        "worker_ceiling_req_per_s": worker_ceiling,
        "router_ceiling_req_per_s": router_ceiling,
    }
    table = Table(title="router overhead: zero-time engine, tiny requests")
    for col in ("measure", "direct", "through router", "router adds", "through nginx", "nginx adds"):
        table.add_column(col, justify="right")
    for q in ("p50", "p99"):
        table.add_row(f"{q} latency", f"{report[f'direct_{q}_ms']:.2f} ms", f"{report[f'routed_{q}_ms']:.2f} ms",
                      f"{report[f'added_{q}_ms']:.2f} ms", f"{report[f'nginx_{q}_ms']:.2f} ms",
                      f"{report[f'nginx_added_{q}_ms']:.2f} ms")
    table.add_row("streamed: first byte p50", f"{report['stream_ttfb_direct_p50_ms']:.2f} ms",
                  f"{report['stream_ttfb_routed_p50_ms']:.2f} ms", f"{report['stream_ttfb_added_p50_ms']:.2f} ms", "", "")
    table.add_row("requests/s ceiling", f"{worker_ceiling:.0f}", f"{router_ceiling:.0f}", "", "", "")
    console.print(table)
    if router_ceiling >= 0.9 * worker_ceiling:
        console.print("the router kept up with the worker: the ceiling measured is the worker's, not the router's")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "router.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    console.print(f"wrote {path}")
    return report
