"""`tts-cluster bench SCENARIO`: each scenario prints a table and writes JSON to bench/results/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import batching_bench, chaos, checkout, cluster_bench, router_bench, voices_bench, worker_bench


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(title="scenarios", metavar="SCENARIO", required=True)
    w = sub.add_parser("worker", help="one piper worker: RTF, req/s, and HTTP + queue overhead vs the engine")
    worker_bench.add_arguments(w)
    w.set_defaults(func=worker_bench.run)
    cl = sub.add_parser("cluster", help="the seed's before/after table; policies vs round-robin, nginx and the ideal; "
                        "two replicas; a slow worker; a killed worker; scaling and load curves (synthetic workers)")
    cluster_bench.add_arguments(cl)
    cl.set_defaults(func=_run_cluster)
    rt = sub.add_parser("router", help="what the router adds: latency of a tiny request, req/s ceiling on one core")
    router_bench.add_arguments(rt)
    rt.set_defaults(func=_run_router)
    ch = sub.add_parser("chaos", help="faults injected into real workers, routers and the operator: every request "
                        "succeeded, failed visibly or was lost (lost must be 0); recovery, peak RSS and fds")
    chaos.add_arguments(ch)
    ch.set_defaults(func=_run_chaos)
    vo = sub.add_parser("voices", help="8 Zipf-popular voices on 4 workers holding 3 each: voice-aware routing "
                        "against voice-blind least-work and one voice; p50/p99, loads per 1000, waits for a load",
                        description=voices_bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    voices_bench.add_arguments(vo)
    vo.set_defaults(func=_run_voices)
    ba = sub.add_parser("batching", help="one GPT-SoVITS worker (v2 T2S shapes, generated weights), batching off vs "
                        "on at 1-16 concurrent: T2S tokens/s, req/s, p50/p95, first byte",
                        description=batching_bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    batching_bench.add_arguments(ba)
    ba.set_defaults(func=_run_batching)
    for scenario in (w, cl, rt, ch, vo, ba):
        scenario.add_argument("--voice-dir", type=Path, default=Path("voices"), help="holds reference.wav")
        scenario.add_argument("--out", type=Path, default=checkout.results_dir(),
                              help="where JSON goes [default bench/results in the checkout, or here]")


def _with_progress(run: Callable[..., Any]) -> Callable[[argparse.Namespace], int]:
    """Runs a scenario with a progress display; its exit code is its return value when that is an int."""

    def runner(args: argparse.Namespace) -> int:
        from rich.console import Console
        from rich.progress import Progress

        from tts_worker.reference import write_reference_clip

        # Wide enough for the result tables when the output is a file or a pipe, not a terminal.
        console = Console(width=None if sys.stdout.isatty() else 132)
        write_reference_clip(args.voice_dir)
        with Progress(console=console) as progress:
            result = run(args, console, progress, args.voice_dir, args.out)
        return result if isinstance(result, int) else 0

    return runner


_run_cluster = _with_progress(cluster_bench.run)
_run_router = _with_progress(router_bench.run)
_run_chaos = _with_progress(chaos.run)
_run_voices = _with_progress(voices_bench.run)
_run_batching = _with_progress(batching_bench.run)
