"""`tts-cluster up`: a local cluster on this machine. Starts N workers and a router as child processes on one host,
restarts a worker that dies (the local stand-in for the operator), and stops everything cleanly on Ctrl-C/SIGTERM.

Worker count: `--workers`, else one per CUDA GPU (capped by the seed's `num_gpus`), else 2 on the CPU. With the seed's
`enable_concurrent_tts: false`, or when fewer than two workers come up, it runs one worker: mode `single`, same API.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tts_cli.processes import is_ready
from tts_common.logs import configure_logging, log_fields

log = logging.getLogger("tts_cli.up")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, help="workers to start [default: one per GPU, else 2]")
    p.add_argument("--engine", choices=["piper", "gpt-sovits", "synthetic"], default="piper",
                   help="engine of every worker (gpt-sovits: give -c tts_infer.yaml, and a checkout with "
                   "--worker-arg=--gpt-sovits-root=PATH unless GPT-SoVITS is installed)")
    p.add_argument("--host", default="127.0.0.1", help="address of the router and workers [default 127.0.0.1]")
    p.add_argument("--port", type=int, default=9880, help="router port; workers take the next ones [default 9880]")
    p.add_argument("-c", "--tts_config", "--tts-config", dest="tts_config", type=Path, default=None,
                   help="tts_infer.yaml: the seed's enable_concurrent_tts and num_gpus are honoured")
    p.add_argument("--voices", type=Path, default=None, metavar="PATH",
                   help="voice catalog for every worker (re-read when it changes) [default: the voices.yaml next to "
                   "tts_infer.yaml, if any]; checked before anything starts")
    p.add_argument("--policy", default=None, help="router policy (see tts-cluster router --help)")
    p.add_argument("--voice-dir", type=Path, default=Path("voices"), help="workers' voice directory [default voices]")
    p.add_argument("--admin-token-file", type=Path, default=None, metavar="PATH",
                   help="a file holding the admin token for the router and every worker (or set TTSC_ADMIN_TOKEN; "
                   "a token is never taken from the command line, where ps shows it)")
    p.add_argument("--allow-unauthenticated-admin", action="store_true",
                   help="open /control and /set_* on the router and every worker to callers without a token, as "
                   "api_v2 is (only where every client is trusted)")
    p.add_argument("--api-keys-file", type=Path, default=None, metavar="PATH",
                   help="API keys that /tts and /v1/* then require (Authorization: Bearer), on the router and every "
                   "worker; see docs/operate/keys.md; checked before anything starts")
    p.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                   help="extra flag for every worker, e.g. --worker-arg=--max-queue-size=20 (repeatable)")
    p.add_argument("--router-arg", action="append", default=[], metavar="ARG", help="extra flag for the router")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds a worker may take to become ready")
    p.add_argument("--prometheus", action="store_true",
                   help="also start Prometheus (Debian's package: make prometheus) scraping the router and workers "
                   "as the chart's ServiceMonitor would, and print its URL")
    p.add_argument("--prometheus-port", type=int, default=9090, help="Prometheus's port [default 9090]")
    p.add_argument("--prometheus-interval", default="5s", help="scrape and rule interval [default 5s]")
    p.add_argument("--prometheus-rules", type=Path, action="append", default=[], metavar="PATH",
                   help="a rule file for that Prometheus, e.g. helm/tts-cluster/files/alerts.yaml (repeatable)")
    p.set_defaults(func=run)


def cuda_gpus() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
            return len([line for line in out.splitlines() if line.startswith("GPU ")])
        except (OSError, subprocess.SubprocessError):
            return 0
    return 0


@dataclass
class Plan:
    count: int
    gpus: list[str]  # CUDA_VISIBLE_DEVICES value per worker; empty on CPU
    reason: str


def plan_workers(requested: Optional[int], engine: str, yaml_values: dict[str, Any]) -> Plan:
    gpus = cuda_gpus() if engine != "synthetic" else 0
    concurrent = bool(yaml_values.get("enable_concurrent_tts", True))
    num_gpus = yaml_values.get("num_gpus")
    if requested is not None:
        count, reason = requested, "--workers"
    elif gpus:
        count, reason = gpus, f"{gpus} CUDA GPU(s) found"
        if isinstance(num_gpus, int) and num_gpus > 0:
            if num_gpus > gpus:
                reason += f"; tts_infer.yaml asks num_gpus={num_gpus}: GPUs are short, using {gpus}"
            count = min(count, num_gpus)
    else:
        count, reason = 2, "no CUDA GPU: 2 CPU workers"
    if not concurrent and count > 1:
        count, reason = 1, "enable_concurrent_tts is false in tts_infer.yaml: single mode"
    count = max(1, count)
    visible = [str(i % gpus) for i in range(count)] if gpus else []
    return Plan(count, visible, reason)


@dataclass
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str]
    url: str
    proc: Optional[subprocess.Popen[bytes]] = None
    restarts: int = 0
    next_start: float = 0.0
    folder: Optional[Path] = None  # a working folder of its own, removed when `up` stops

    def start(self) -> None:
        # Own session: a terminal's Ctrl-C reaches only the supervisor, which then stops children in order
        # (a second signal would make a child skip its drain).
        self.proc = subprocess.Popen(self.cmd, env=self.env, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _wait_ready(children: list[Child], timeout: float) -> list[Child]:
    deadline = time.monotonic() + timeout
    pending, ready = list(children), []
    while pending and time.monotonic() < deadline:
        for c in list(pending):
            if not c.alive():
                pending.remove(c)
                continue
            if is_ready(c.url):
                ready.append(c)
                pending.remove(c)
        time.sleep(0.2)
    return ready


def _stop(children: list[Child], timeout: float = 30.0) -> None:
    for c in children:
        if c.proc is not None and c.alive():
            c.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for c in children:
        if c.proc is None:
            continue
        try:
            c.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.proc.kill()


def _worker_children(args: argparse.Namespace, plan: Plan) -> list[Child]:
    py = [sys.executable, "-m", "tts_cli"]
    threads = max(1, (os.cpu_count() or 1) // plan.count)
    workers: list[Child] = []
    for i in range(plan.count):
        port = args.port + 1 + i
        env = dict(os.environ)
        cmd = [*py, "worker", "-a", args.host, "-p", str(port), "--engine", args.engine, "--voice-dir",
               str(args.voice_dir), "--worker-id", f"worker-{i}"]
        if args.tts_config:
            cmd += ["-c", str(args.tts_config)]
        if args.voices:
            cmd += ["--voices", str(args.voices.absolute())]
        if plan.gpus:
            env["CUDA_VISIBLE_DEVICES"] = plan.gpus[i]
            cmd += ["--device", "cuda"]
        else:
            cmd += ["--device", "cpu", "--cpu-threads", str(threads)]
        if args.admin_token_file:
            env["TTSC_ADMIN_TOKEN_FILE"] = str(args.admin_token_file.absolute())
        if args.allow_unauthenticated_admin:
            cmd.append("--allow-unauthenticated-admin")
        if args.api_keys_file:
            # Keys guard the worker's own port; their limits are the router's (it may retry a request elsewhere).
            cmd += ["--api-keys-file", str(args.api_keys_file.absolute()), "--no-api-key-limits"]
        workers.append(Child(f"worker-{i}", [*cmd, *args.worker_arg], env, f"http://{args.host}:{port}"))
    return workers


def _router_child(args: argparse.Namespace, workers: list[Child]) -> Child:
    cmd = [sys.executable, "-m", "tts_cli", "router", "--bind-addr", args.host, "--port", str(args.port)]
    for w in workers:
        cmd += ["--worker", w.url]
    if args.policy:
        cmd += ["--policy", args.policy]
    if args.api_keys_file:
        cmd += ["--api-keys-file", str(args.api_keys_file.absolute())]
    env = dict(os.environ)
    # One token for the whole local cluster, passed through the environment or a file, never argv.
    if args.allow_unauthenticated_admin:
        cmd.append("--allow-unauthenticated-admin")
    if args.admin_token_file:
        env["TTSC_ROUTER_ADMIN_TOKEN_FILE"] = str(args.admin_token_file.absolute())
    elif os.environ.get("TTSC_ADMIN_TOKEN") and not os.environ.get("TTSC_ROUTER_ADMIN_TOKEN"):
        env["TTSC_ROUTER_ADMIN_TOKEN"] = os.environ["TTSC_ADMIN_TOKEN"]
    return Child("router", [*cmd, *args.router_arg], env, f"http://{args.host}:{args.port}")


def _supervise(children: list[Child], stopping: Callable[[], bool]) -> None:
    """A child that dies is started again, with a growing pause if it keeps dying."""
    while not stopping():
        now = time.monotonic()
        for c in children:
            if not c.alive() and now >= c.next_start and not stopping():
                code = c.proc.returncode if c.proc else None
                c.restarts += 1
                c.next_start = now + min(30.0, 2 ** min(c.restarts, 5))
                log_fields(log, f"{c.name} exited with {code}: restarting (restart {c.restarts})", logging.WARNING)
                c.start()
        time.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    from tts_worker.settings import read_tts_infer_yaml

    configure_logging("info", json_lines=False)
    if args.voices is None and args.tts_config and (beside := args.tts_config.parent / "voices.yaml").is_file():
        args.voices = beside
    if not _inputs_accepted(args):
        return 2
    yaml_values = read_tts_infer_yaml(args.tts_config) if args.tts_config else {}
    plan = plan_workers(args.workers, args.engine, yaml_values)
    log_fields(log, f"starting {plan.count} worker(s): {plan.reason}")
    if args.engine == "piper":
        from tts_worker.reference import write_reference_clip

        write_reference_clip(args.voice_dir)
    workers = _worker_children(args, plan)

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())

    for w in workers:
        w.start()
    ready = _wait_ready(workers, args.ready_timeout)
    if stop.is_set():
        _stop(workers)
        return 0
    failed = [w for w in workers if w not in ready]
    for w in failed:
        log_fields(log, f"{w.name} failed to initialise: left out", logging.WARNING)
    _stop(failed)
    workers = ready
    if not workers:
        log_fields(log, "no worker came up: stopping", logging.ERROR)
        return 1
    if len(workers) == 1:
        log_fields(log, "one worker serving: mode single (the fallback), same API")

    router = _router_child(args, workers)
    router.start()
    if not _wait_ready([router], 30):
        log_fields(log, "router did not become ready: stopping", logging.ERROR)
        _stop([router, *workers])
        return 1

    prometheus = _start_prometheus(args, router, workers) if args.prometheus else None
    if args.prometheus and prometheus is None:
        _stop([router, *workers])
        return 1
    _greet(args, router.url, len(workers), prometheus is not None)
    _supervise([router, *workers], stop.is_set)
    log_fields(log, "stopping: router first, then workers drain")
    _stop([router])
    _stop(workers)
    if prometheus is not None:
        _stop([prometheus])
        if prometheus.folder is not None:
            shutil.rmtree(prometheus.folder, ignore_errors=True)
    return 0


def _inputs_accepted(args: argparse.Namespace) -> bool:
    """The voice catalog, the API keys and Prometheus, checked before any worker starts: one clear error naming the
    voice or key and the field (each worker would refuse them alike), or the missing program."""
    if args.voices is not None:
        from tts_common.voices import CatalogError, load_catalog

        try:
            catalog = load_catalog(args.voices)
        except CatalogError as exc:
            log_fields(log, f"voice catalog refused: {exc}", logging.ERROR)
            return False
        log_fields(log, f"voice catalog {args.voices}: {', '.join(catalog.names()) or 'no voices'}")
    if args.api_keys_file is not None:
        from tts_common.api_keys import KeysError, load_keys

        try:
            ring = load_keys(args.api_keys_file)
        except KeysError as exc:
            log_fields(log, f"API keys refused: {exc}", logging.ERROR)
            return False
        log_fields(log, f"API keys {args.api_keys_file}: {len(ring.keys)} key(s) required on /tts and /v1")
    if args.prometheus:
        from tts_cli import prometheus

        if prometheus.binary() is None:
            log_fields(log, "--prometheus: no prometheus binary on PATH: install Debian's prometheus package "
                            "(make prometheus)", logging.ERROR)
            return False
    return True


def _greet(args: argparse.Namespace, url: str, workers: int, prometheus: bool) -> None:
    # With keys, the example sends one the way clients must (the key itself is the user's, never printed).
    auth = " -H \"Authorization: Bearer $TTS_API_KEY\"" if args.api_keys_file else ""
    print(f"\ntts-cluster up: router on {url} with {workers} worker(s) ({args.engine}). Try:\n"
          f"  curl{auth} -o hello.wav '{url}/tts?text=Hello%20from%20tts-cluster.&text_lang=en"
          f"&ref_audio_path=reference.wav&prompt_lang=en'\n"
          f"  curl {url}/concurrent_stats\n"
          + (f"Prometheus on http://{args.host}:{args.prometheus_port} (the dashboards' queries work there)\n"
             if prometheus else "")
          + "Ctrl-C stops everything.\n", flush=True)


def _start_prometheus(args: argparse.Namespace, router: Child, workers: list[Child]) -> Optional[Child]:
    """Prometheus beside the cluster, scraping it as in Kubernetes (tts_cli.prometheus); None if it cannot start."""
    import tempfile

    from tts_cli import prometheus

    host_port = router.url.removeprefix("http://")
    targets = [prometheus.Target(host_port, "tts", "router", "router")]
    targets += [prometheus.Target(w.url.removeprefix("http://"), "tts-workers", w.name, "worker") for w in workers]
    folder = Path(tempfile.mkdtemp(prefix="tts-cluster-prometheus-"))
    try:
        proc = prometheus.start(targets, folder, args.host, args.prometheus_port, args.prometheus_interval,
                                tuple(args.prometheus_rules))
    except FileNotFoundError as exc:
        log_fields(log, str(exc), logging.ERROR)
        return None
    url = f"http://{args.host}:{args.prometheus_port}"
    # Not supervised: a Prometheus that dies leaves the cluster serving.
    child = Child("prometheus", [str(a) for a in proc.args] if isinstance(proc.args, list) else [], {}, url, proc,
                  folder=folder)
    if not prometheus.wait_ready(url):
        log_fields(log, f"Prometheus did not become ready: see {folder / 'prometheus.log'}", logging.ERROR)
        _stop([child])
        return None
    log_fields(log, f"Prometheus on {url}, data in {folder}")
    return child
