"""The chaos suite's processes: real workers, routers and fault workers on 127.0.0.1, restarted on their own port
after a fault, and sampled for memory and open file descriptors while a scenario runs.

Every process a scenario starts belongs to its `Fleet`, which stops them all however the scenario ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx

from tts_cli.processes import ServiceProcess, free_port, start_service


def supported_flags(commands: list[str], wanted: list[str]) -> dict[str, list[str]]:
    """Which of `wanted` (e.g. `--read-timeout`) `tts-cluster COMMAND --help` lists, per command: flags still
    being added are passed only once they exist. The commands are asked at once."""
    procs = {c: subprocess.Popen([sys.executable, "-m", "tts_cli", c, "--help"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True) for c in commands}
    helps = {c: p.communicate(timeout=60)[0] for c, p in procs.items()}
    return {c: [flag for flag in wanted if flag in text] for c, text in helps.items()}


@dataclass
class Hardening:
    """Connection limits and timeouts, passed where the router's or worker's --help lists them."""

    router: list[str] = field(default_factory=list)
    worker: list[str] = field(default_factory=list)

    @staticmethod
    def detect(read_timeout: float, keepalive: float, max_connections: int) -> "Hardening":
        values = {"--read-timeout": str(read_timeout), "--keepalive-timeout": str(keepalive),
                  "--max-connections": str(max_connections)}
        found = supported_flags(["router", "worker"], list(values))

        def args(command: str) -> list[str]:
            return [x for flag in found[command] for x in (flag, values[flag])]

        return Hardening(router=args("router"), worker=args("worker"))


class ProcMonitor:
    """Samples /proc of the scenario's processes: the peak of the summed resident memory, the peak of the summed
    open fds, and each role's own peaks. Processes come and go (a restarted worker is a new pid)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self._pids: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-monitor", daemon=True)
        self.peak_rss_kb = 0
        self.peak_fds = 0
        self.role_rss_kb: dict[str, int] = {}
        self.role_fds: dict[str, int] = {}

    def watch(self, role: str, pid: int) -> None:
        with self._lock:
            self._pids[pid] = role

    def start(self) -> "ProcMonitor":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            pids = dict(self._pids)
        rss_total = fds_total = 0
        for pid, role in pids.items():
            rss, hwm, fds = _proc_numbers(pid)
            if fds < 0:
                continue  # gone
            rss_total += rss
            fds_total += fds
            self.role_rss_kb[role] = max(self.role_rss_kb.get(role, 0), hwm, rss)
            self.role_fds[role] = max(self.role_fds.get(role, 0), fds)
        self.peak_rss_kb = max(self.peak_rss_kb, rss_total)
        self.peak_fds = max(self.peak_fds, fds_total)


def rss_kb(pid: int) -> int:
    """Resident memory of a live process now, in kB (0 once it is gone)."""
    return _proc_numbers(pid)[0]


def _proc_numbers(pid: int) -> tuple[int, int, int]:
    """(VmRSS kB, VmHWM kB, open fds) of a live process; fds -1 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0, 0, -1
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if not values:  # a zombie: no memory left to count
        return 0, 0, -1
    return values.get("VmRSS", 0), values.get("VmHWM", 0), fds


@dataclass
class Spec:
    """How to (re)start one process: the same command line on the same port."""

    kind: str  # "worker", "router", "fault"
    args: list[str]
    port: int
    role: str


class Fleet:
    def __init__(self, voice_dir: Path, logs: Path, monitor: ProcMonitor, hardening: Hardening,
                 ready_timeout: float = 60.0) -> None:
        self.voice_dir, self.logs, self.monitor, self.hardening = voice_dir, logs, monitor, hardening
        self.ready_timeout = ready_timeout
        self.procs: list[ServiceProcess] = []
        self.specs: dict[int, Spec] = {}  # by port

    # -- starting ------------------------------------------------------------------------------------------
    def worker_args(self, name: str, base: float, per_char: float, extra: tuple[str, ...] = ()) -> list[str]:
        return ["--engine", "synthetic", "--voice-dir", str(self.voice_dir), "--worker-id", name,
                "--synthetic-base-seconds", str(base), "--synthetic-seconds-per-char", str(per_char),
                "--num-warmup", "0", "--log-level", "warning", *self.hardening.worker, *extra]

    def workers(self, count: int, base: float = 0.05, per_char: float = 0.002, prefix: str = "w",
                extra: tuple[str, ...] = (), wait: bool = True) -> list[ServiceProcess]:
        """`count` synthetic workers started at once (start-up is mostly imports: overlapping them saves time)."""
        started = []
        for i in range(count):
            name = f"{prefix}{i + 1}"
            started.append(self._launch(Spec("worker", self.worker_args(name, base, per_char, extra), free_port(),
                                             f"worker {name}")))
        if wait:
            self.wait_ready(started)
        return started

    def router(self, workers: list[ServiceProcess], extra: tuple[str, ...] = (), role: str = "router",
               workers_file: Optional[Path] = None, wait: bool = True) -> ServiceProcess:
        args = [*(f for w in workers for f in ("--worker", w.url)), "--poll-interval", "0.1",
                "--log-level", "warning", *self.hardening.router, *extra]
        if workers_file is not None:
            args += ["--workers-file", str(workers_file)]
        p = self._launch(Spec("router", args, free_port(), role))
        if wait:
            self.wait_ready([p])
        return p

    def cluster(self, workers: int = 3, routers: int = 1, **worker_kw: Any) -> tuple[list[ServiceProcess],
                                                                                      list[ServiceProcess]]:
        """Workers and routers (named A, B, ... when several) started together; returns once all are ready and
        every router counts every worker healthy."""
        ws = self.workers(workers, wait=False, **worker_kw)
        roles = ["router"] if routers == 1 else [f"router {chr(ord('A') + i)}" for i in range(routers)]
        rs = [self.router(ws, role=role, wait=False) for role in roles]
        self.wait_ready([*ws, *rs])
        for r in rs:
            # Set-up, not a measurement: on a loaded 2-core machine the first polls of fresh workers can take a while.
            if not wait_healthy(r, workers, timeout=60.0):
                raise RuntimeError(f"{r.url} never counted {workers} healthy workers")
        return ws, rs

    def fault(self, mode: str) -> ServiceProcess:
        port = free_port()
        p = self._launch(Spec("fault", ["--mode", mode, "--worker-id", f"fault-{mode}"], port, f"fault {mode}"))
        self.wait_ready([p])
        return p

    def _launch(self, spec: Spec) -> ServiceProcess:
        self.specs[spec.port] = spec
        if spec.kind == "fault":
            log_path = self.logs / f"fault-{spec.port}.log"
            with open(log_path, "ab") as log:
                proc = subprocess.Popen([sys.executable, "-m", "tts_bench.chaos_faults", "--port", str(spec.port),
                                         *spec.args], stdout=log, stderr=subprocess.STDOUT)
            p = ServiceProcess(proc, spec.port, log_path)
        else:
            p = start_service(spec.kind, spec.args, self.logs, ready_timeout=0, port=spec.port)
        self.procs.append(p)
        self.monitor.watch(spec.role, p.proc.pid)
        return p

    def wait_ready(self, procs: list[ServiceProcess]) -> None:
        """Until every one of `procs` answers /readyz 200; raises naming the first that exits or stays unready."""
        deadline = time.monotonic() + self.ready_timeout
        waiting = list(procs)
        # One client for the whole wait: a new one per poll costs milliseconds of CPU (an SSL context each), which
        # the starting processes need more on a small machine.
        with httpx.Client(timeout=1.0) as http:
            while waiting and time.monotonic() < deadline:
                for p in list(waiting):
                    if p.proc.poll() is not None:
                        raise RuntimeError(f"{p.url} exited with {p.proc.returncode}:\n{p.log_text()[-3000:]}")
                    try:
                        if http.get(f"{p.url}/readyz").status_code == 200:
                            waiting.remove(p)
                    except httpx.HTTPError:
                        pass
                time.sleep(0.05)
        if waiting:
            p = waiting[0]
            raise RuntimeError(f"{p.url} not ready after {self.ready_timeout} s:\n{p.log_text()[-3000:]}")

    # -- faults and recovery -------------------------------------------------------------------------------
    def kill(self, p: ServiceProcess, sig: signal.Signals, wait: float = 40.0) -> Optional[int]:
        """Send `sig`, wait for the exit (a SIGTERM drains first), SIGKILL past `wait`. Returns the exit code."""
        if p.proc.poll() is None:
            p.proc.send_signal(sig)
        try:
            return p.proc.wait(wait)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            return p.proc.wait(5)

    def restart(self, p: ServiceProcess) -> None:
        """The same command line on the same port, as a supervisor would; returns once /readyz is 200. `p` then
        stands for the new process, so the scenario's references follow the restart."""
        if p.log_path.exists():  # the new process writes the same log name: keep the old one's
            p.log_path.rename(p.log_path.with_name(f"{p.log_path.name}.{time.monotonic_ns()}"))
        fresh = self._launch(self.specs[p.port])
        self.procs.remove(fresh)
        p.proc, p.log_path = fresh.proc, fresh.log_path
        self.wait_ready([p])

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.proc.wait(15)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait(5)


def wait_healthy(router: ServiceProcess, count: int, timeout: float = 20.0) -> bool:
    """Until the router counts `count` healthy workers in /concurrent_stats."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(f"{router.url}/concurrent_stats").json().get("gpu_count", 0) >= count:
                    return True
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
    return False


def wait_serving(router: ServiceProcess, worker_url: str, timeout: float = 20.0) -> bool:
    """Until the router lists the worker at `worker_url` as healthy again."""
    return _wait_listed(router, worker_url, timeout, healthy=True)


def wait_listed(router: ServiceProcess, worker_url: str, timeout: float = 20.0) -> bool:
    """Until the router lists the worker at `worker_url`, healthy or not (discovery has seen it)."""
    return _wait_listed(router, worker_url, timeout, healthy=False)


def _wait_listed(router: ServiceProcess, worker_url: str, timeout: float, healthy: bool) -> bool:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                for w in http.get(f"{router.url}/concurrent_stats").json().get("workers", []):
                    if w.get("url") == worker_url and (w.get("healthy") or not healthy):
                        return True
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
    return False
