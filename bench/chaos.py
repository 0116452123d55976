"""`tts-cluster bench chaos [--quick]`: faults injected into a running cluster of real processes, and every
request's fate counted: succeeded, failed visibly, or lost (see `chaos_load`).

Each scenario starts its own synthetic workers and routers on 127.0.0.1 (`chaos_fleet`), puts a seeded open-loop
load through them, injects one fault (kill or stop a worker or router, a burst, a worker that fails fast, a slow
worker, connection floods, a request that could kill a worker, the operator killed mid-scale), and measures the
recovery, the peak memory and open fds of the processes. A lost request is a defect whatever else happened, so the
suite exits 1 if any scenario lost one (or broke one of its invariants, such as every worker still alive).

Scenario 16, a stream that outlives its worker's deadline, covers the one way a worker itself could end a stream
cleanly but short. Scenarios 17-18 abandon thousands of streams and fail if the router's or a worker's memory
stays grown once idle (`chaos_memory`); 19-20 fail if a worker's 503 reaches a client while a peer has room
(`chaos_refusals`); the floods (12-13) fail if a request sent during them is refused. Everything is bounded: each
load runs for a fixed time (longer only while its fault is still being injected, up to a cap), each request has a
deadline, each wait has a timeout; the suite stops by itself.
"""

from __future__ import annotations

import asyncio
import itertools
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import httpx

from tts_cli.processes import ServiceProcess

from .chaos_env import (
    KEEPALIVE_TIMEOUT,
    MAX_CONNECTIONS,
    READ_TIMEOUT,
    WORKERS,
    Env,
    Marks,
    Profile,
    Side,
    alive,
    role_name,
    scenario_result,
    write_list,
)
from .chaos_fleet import Fleet, Hardening, ProcMonitor, wait_healthy, wait_listed, wait_serving
from .chaos_load import ChaosClient, IdleSockets, Job, Outcome, Trickle, burst
from .chaos_memory import abandon_scenario
from .chaos_operator import operator_kill
from .chaos_refusals import drain_overrun, no_503
from .chaos_report import Check, ScenarioResult, print_restart, print_table, recovery, report, served_again, write
from .corpus import sentences
from .stats import pct

DEATH_TEXT = "a" * 1000  # one segment of 1000 characters: 70 s of audio, about 2.2M samples in one body


def add_arguments(p: Any) -> None:
    p.add_argument("--quick", action="store_true", help="a few seconds per scenario (the test's run)")
    p.add_argument("--only", default="", help="comma-separated scenario keys to run (see the table) [all]")
    p.add_argument("--rate", type=float, default=8.0, help="steady load, requests/s [8; about 45%% of 3 workers]")
    p.add_argument("--seconds", type=float, default=None, help="load per scenario in seconds [8; --quick 1.5]")
    p.add_argument("--bound", type=float, default=None,
                   help="seconds after which an accepted request with no answer is lost [30; --quick 20]")
    p.add_argument("--idle-sockets", type=int, default=None, help="idle-socket flood size [3000; --quick 1000]")
    p.add_argument("--slow-headers", type=int, default=None, help="slow-header connections [1000; --quick 300]")
    p.add_argument("--abandoned", type=int, default=None,
                   help="streams left after their first bytes, per memory scenario [3000; --quick 500]")
    p.add_argument("--seed", type=int, default=7, help="texts and arrival times [7]")
    p.add_argument("--logs", type=Path, default=None, help="keep the processes' logs here [a temporary folder]")


# ---- 1-3: workers killed, stopped ----------------------------------------------------------------------------


def worker_kill(env: Env, streaming: bool) -> ScenarioResult:
    workers, (router,) = env.fleet.cluster(WORKERS)
    victim = workers[0]

    def fault(m: Marks) -> None:
        m.mark("injected")
        env.fleet.kill(victim, signal.SIGKILL)
        env.fleet.restart(victim)
        wait_serving(router, victim.url)
        m.mark("back")

    modes = [1, 2] if streaming else [0]
    outcomes, marks = env.load([router.url], env.jobs(modes), [(env.p.seconds / 3, fault)])
    back = served_again(outcomes, marks.get("back") or 1e9, lambda o: o.worker == role_name(env, victim))
    key, title = ("worker-kill-stream", "2 worker SIGKILL, streams") if streaming else \
        ("worker-kill", "1 worker SIGKILL")
    return scenario_result(key, title, f"SIGKILL {role_name(env, victim)} of 3; restart", outcomes, marks,
                           recovery(outcomes, marks.get("injected"), back, needs_back=True),
                           [alive([router, *workers], "process")])


def rolling_sigterm(env: Env) -> ScenarioResult:
    workers, (router,) = env.fleet.cluster(WORKERS)
    exits: list[Optional[int]] = []

    def fault(m: Marks) -> None:
        m.mark("injected")
        for w in workers:
            exits.append(env.fleet.kill(w, signal.SIGTERM))
            env.fleet.restart(w)
            wait_serving(router, w.url)
        m.mark("back")

    outcomes, marks = env.load([router.url], env.jobs([0, 1, 2]), [(env.p.seconds / 4, fault)])
    last = role_name(env, workers[-1])
    back = served_again(outcomes, marks.get("back") or 1e9, lambda o: o.worker == last)
    clean = Check("each SIGTERMed worker drained and exited 0", len(exits) == len(workers) and
                  all(c == 0 for c in exits), f"exit codes {exits}")
    return scenario_result("rolling-sigterm", "3 rolling SIGTERM", "SIGTERM w1..w3 in turn, restart each",
                           outcomes, marks, recovery(outcomes, marks.get("injected"), back, needs_back=True),
                           [clean, alive([router, *workers], "process")], exit_codes=exits)


# ---- 4-5: routers killed, stopped ----------------------------------------------------------------------------


def router_stop(env: Env, sig: signal.Signals, held: int = 6) -> ScenarioResult:
    """Two routers, the client spreads over both and fails over. Just before the signal, `held` long requests
    go to router A, so it holds several when the signal comes; a SIGTERM must let them finish."""
    workers, (a, b) = env.fleet.cluster(WORKERS, routers=2)
    exits: list[Optional[int]] = []
    jobs = env.jobs([0, 1, 2])
    long_jobs = sorted(jobs, key=lambda j: len(j.text))[-held:]

    def stop(m: Marks) -> None:
        m.mark("injected")
        exits.append(env.fleet.kill(a, sig))
        m.mark("exited")
        env.fleet.restart(a)  # returns once /readyz is 200: a worker is healthy, requests are served
        m.mark("ready")
        wait_healthy(a, WORKERS)
        m.mark("back")

    async def side(client: ChaosClient, m: Marks) -> None:
        await asyncio.sleep(env.p.seconds / 3)
        sent = [asyncio.create_task(client.send(job, first=0)) for job in long_jobs]
        await asyncio.sleep(0.15)  # accepted and being served when the signal comes
        await asyncio.to_thread(stop, m)
        await asyncio.gather(*sent)

    outcomes, marks = env.load([a.url, b.url], jobs, sides=[side], failover=True)
    back = served_again(outcomes, marks.get("back") or 1e9, lambda o: o.entry == a.url and o.attempts == 1)
    rec = recovery(outcomes, marks.get("injected"), back, needs_back=True)
    sigterm = sig == signal.SIGTERM
    checks = [alive([a, b, *workers], "process")]
    if sigterm:
        checks += [_drained(outcomes, a.url, marks.get("injected")),
                   Check("router exited 0", exits == [0], f"exit codes {exits}")]
    key, title = ("router-term", "5 router SIGTERM") if sigterm else ("router-kill", "4 router SIGKILL")
    what = "SIGTERM" if sigterm else "SIGKILL"
    return scenario_result(key, title, f"{what} router A of 2 holding {held}+; restart", outcomes, marks, rec,
                           checks, exit_codes=exits, **_restart_times(marks, outcomes, a.url))


def _restart_times(marks: Marks, outcomes: list[Outcome], url: str) -> dict[str, Optional[float]]:
    """Where a router's restart goes: from the signal to its exit (the requests it held finishing), from the exit
    to /readyz 200 on the new process (start-up: imports, the first poll of a worker), and to its first success."""
    at, exited, ready = marks.get("injected"), marks.get("exited"), marks.get("ready")
    first = min((o.done_at for o in outcomes if o.verdict == "ok" and o.entry == url and o.attempts == 1
                 and exited is not None and o.sent_at >= exited), default=None)

    def span(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return None if a is None or b is None else round(b - a, 3)

    return {"signal_to_exit_s": span(at, exited), "exit_to_ready_s": span(exited, ready),
            "signal_to_ready_s": span(at, ready), "signal_to_first_success_s": span(at, first)}


def _drained(outcomes: list[Outcome], url: str, at: Optional[float]) -> Check:
    """Requests router A held when it got SIGTERM must finish there, whole."""
    if at is None:
        return Check("in-flight requests finished after SIGTERM", False, "no SIGTERM was sent")
    held = [o for o in outcomes if o.first_entry == url and o.sent_at < at < o.done_at]
    bad = [o for o in held if o.verdict != "ok" or o.attempts > 1]
    detail = f"{len(held) - len(bad)}/{len(held)} in-flight requests finished on the stopping router"
    if bad:
        detail += ": " + "; ".join(sorted({o.detail or "failed over" for o in bad}))[:200]
    return Check("in-flight requests finished after SIGTERM", not bad, detail)


# ---- 6: burst ------------------------------------------------------------------------------------------------


def burst_10x(env: Env) -> ScenarioResult:
    workers, (router,) = env.fleet.cluster(WORKERS)
    count = 10 * _capacity(workers)
    jobs = env.jobs([0, 1, 2])

    async def side(client: ChaosClient, m: Marks) -> None:
        await asyncio.sleep(env.p.seconds / 3)
        m.mark("injected")
        await burst(client, jobs, count)

    outcomes, marks = env.load([router.url], jobs, sides=[side])
    return scenario_result("burst", "6 10x burst", f"{count} requests at once (10x capacity)", outcomes, marks,
                           recovery(outcomes, marks.get("injected")), [alive([router, *workers], "process")],
                           burst=count)


def _capacity(workers: list[ServiceProcess]) -> int:
    return sum(int(httpx.get(f"{w.url}/stats", timeout=5).json()["capacity"]) for w in workers)


# ---- 7-11: one bad worker among healthy ones -----------------------------------------------------------------


def _with_newcomer(env: Env, key: str, title: str, injected: str,
                   newcomer: Callable[[], ServiceProcess], newcomer_id: str) -> ScenarioResult:
    """3 healthy workers behind a router that reads its workers from a file; a third of the way in, the newcomer
    (a failing or slow worker) is added to the file, as discovery would add a new pod."""
    workers = env.fleet.workers(WORKERS, wait=False)
    listing = env.fleet.logs / f"{key}-workers.txt"
    write_list(listing, workers)
    router = env.fleet.router([], workers_file=listing, wait=False)
    bad = newcomer()
    env.fleet.wait_ready([*workers, router, bad])
    wait_healthy(router, WORKERS)

    def fault(m: Marks) -> None:
        write_list(listing, [*workers, bad])
        m.mark("injected")
        if wait_listed(router, bad.url, timeout=3.0):  # healthy or not: a failing worker may be ejected at once
            m.mark("router_sees_it")

    outcomes, marks = env.load([router.url], env.jobs([0, 1, 2]), [(env.p.seconds / 3, fault)])
    at = marks.get("injected") or 0.0
    marks.notes.update(answered_by_newcomer=sum(1 for o in outcomes if o.worker == newcomer_id),
                       tts_requests_at_newcomer=_hits(bad), newcomer_ejected_at_end=_ejected(router, bad.url),
                       router_saw_newcomer_s=marks.get("router_sees_it"),
                       p99_ok_before_s=_p99([o for o in outcomes if o.sent_at < at]),
                       p99_ok_after_s=_p99([o for o in outcomes if o.sent_at >= at]))
    return scenario_result(key, title, injected, outcomes, marks, recovery(outcomes, marks.get("injected")),
                           [alive([router, *workers], "process")])


def _p99(outcomes: list[Outcome]) -> Optional[float]:
    lat = [o.done_at - o.sent_at for o in outcomes if o.verdict == "ok"]
    return round(pct(lat, 0.99), 3) if lat else None


def _hits(p: ServiceProcess) -> Optional[int]:
    """/tts requests a worker got: the fault worker counts them, a real worker's /stats sums its outcomes."""
    try:
        body = httpx.get(f"{p.url}/_chaos", timeout=3)
        if body.status_code == 200:
            return int(body.json()["tts_requests"])
        s = httpx.get(f"{p.url}/stats", timeout=3).json()
        return sum(int(s.get(k, 0)) for k in ("processed", "failed", "rejected", "cancelled"))
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _ejected(router: ServiceProcess, url: str) -> Optional[bool]:
    try:
        for w in httpx.get(f"{router.url}/concurrent_stats", timeout=3).json().get("workers", []):
            if w.get("url") == url:
                return bool(w.get("ejected")) or not w.get("healthy")
    except (httpx.HTTPError, ValueError):
        pass
    return None


FAULT_TITLES = {
    "500": ("bad-worker-500", "7 worker answers 500", "worker joins: every /tts -> 500"),
    "400": ("bad-worker-400", "8 worker answers 400", "worker joins: every /tts -> 400"),
    "503": ("bad-worker-503", "19 worker answers 503", "worker joins: every /tts -> 503"),
    "reset": ("bad-worker-reset", "9 worker resets", "worker joins: resets every /tts"),
    "cut": ("bad-worker-cut", "10 worker cuts bodies", "worker joins: cuts every body"),
}


def bad_worker(env: Env, mode: str) -> ScenarioResult:
    key, title, injected = FAULT_TITLES[mode]
    result = _with_newcomer(env, key, title, injected, lambda: env.fleet.fault(mode), f"fault-{mode}")
    if mode == "503":  # a refusal is retried on a peer with room: none reaches a client (issue 30)
        result.checks.append(no_503(result.outcomes))
        result.extra["retried_by_router"] = sum(o.retries for o in result.outcomes)
    return result


def slow_worker(env: Env) -> ScenarioResult:
    def slow() -> ServiceProcess:
        return env.fleet.workers(1, base=0.05, per_char=0.02, prefix="slow", wait=False)[0]

    return _with_newcomer(env, "slow-worker", "11 slow worker", "worker 10x slower per char joins",
                          slow, "slow1")


# ---- 12-13: connection floods --------------------------------------------------------------------------------


def idle_flood(env: Env) -> ScenarioResult:
    workers, (router,) = env.fleet.cluster(WORKERS)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = max(0, min(env.p.idle_sockets, soft - 512))  # keep fds for the load client itself
    idle = IdleSockets("127.0.0.1", router.port)

    def fault(m: Marks) -> None:
        at = m.mark("injected")
        idle.open(count)
        m.notes.update(idle_opened=len(idle.socks), idle_refused=idle.failed,
                       idle_open_s=round(m.clock.now() - at, 2))
        time.sleep(0.5)
        m.notes["idle_after_0_5_s"] = idle.states()  # before any read timeout: what a connection limit did
        time.sleep(max(0.0, at + env.flood_hold - m.clock.now()))
        m.notes[f"idle_after_{env.flood_hold:g}_s"] = idle.states()
        idle.close()
        m.mark("flood_over")

    jobs = env.jobs([0, 1, 2])
    try:
        outcomes, marks = env.load([router.url], jobs, [(env.p.seconds / 4, fault)],
                                   sides=[_fresh_probes(jobs, "injected", "flood_over")])
    finally:
        idle.close()
    return scenario_result("idle-flood", "12 idle-socket flood", f"{count} idle TCP connections", outcomes,
                           marks, recovery(outcomes, marks.get("injected")),
                           [alive([router, *workers], "process"), _served_during(outcomes, marks)],
                           fd_soft_limit=soft)


def _served_during(outcomes: list[Outcome], marks: Marks) -> Check:
    """Every request sent while the flood was held succeeded: new connections among them (the probes), whose
    clients arrived after the flood filled the connection table, too. The workers had room all along."""
    at, over = marks.get("injected"), marks.get("flood_over")
    during = [o for o in outcomes if at is not None and over is not None and at <= o.sent_at <= over]
    bad = [o for o in during if o.verdict != "ok"]
    fresh = sum(1 for o in during if o.fresh)
    detail = f"{len(during) - len(bad)}/{len(during)} sent during the flood succeeded ({fresh} on new connections)"
    if bad:
        detail += ": " + "; ".join(sorted({o.detail for o in bad}))[:200]
    return Check("requests sent during the flood succeeded", bool(during) and not bad, detail)


def _fresh_probes(jobs: list[Job], start: str, stop: str, every: float = 0.25, limit: float = 60.0) -> Side:
    """A side task: from mark `start` until mark `stop`, one request every `every` seconds on a new connection.
    The steady load reuses connections opened before the flood; a client arriving during it shows whether a
    connection limit turns it away."""

    async def probe(client: ChaosClient, m: Marks) -> None:
        began = time.monotonic()
        while m.get(start) is None and time.monotonic() - began < limit:
            await asyncio.sleep(0.02)
        sent: list[asyncio.Task[Outcome]] = []
        for job in itertools.cycle(jobs):
            if m.get(stop) is not None or time.monotonic() - began > limit:
                break
            sent.append(asyncio.create_task(client.send(job, fresh=True)))
            await asyncio.sleep(every)
        await asyncio.gather(*sent)

    return probe


def slow_headers(env: Env) -> ScenarioResult:
    workers, (router,) = env.fleet.cluster(WORKERS)
    trickle: list[Trickle] = []

    async def side(client: ChaosClient, m: Marks) -> None:
        await asyncio.sleep(env.p.seconds / 4)
        at = m.mark("injected")
        t = Trickle("127.0.0.1", router.port, m.clock)
        trickle.append(t)
        await t.run(env.p.slow_headers, until=at + env.flood_hold)
        m.mark("flood_over")

    jobs = env.jobs([0, 1, 2])
    outcomes, marks = env.load([router.url], jobs, sides=[side, _fresh_probes(jobs, "injected", "flood_over")])
    t = trickle[0] if trickle else None
    at = marks.get("injected") or 0.0
    closes = sorted(c - at for c in t.closed_at) if t else []
    marks.notes.update(trickle_opened=t.opened if t else 0, trickle_refused=t.refused if t else 0,
                       trickle_closed_by_router=len(closes),
                       trickle_median_close_s=round(closes[len(closes) // 2], 2) if closes else None)
    return scenario_result("slow-headers", "13 slow-header flood",
                           f"{env.p.slow_headers} connections trickling headers", outcomes, marks,
                           recovery(outcomes, marks.get("injected")),
                           [alive([router, *workers], "process"), _served_during(outcomes, marks)])


# ---- 14: the request of death --------------------------------------------------------------------------------


def request_of_death(env: Env) -> ScenarioResult:
    # The danger is in encoding one huge body, not in synthesis: the engine is made fast so the run is short.
    workers, (router,) = env.fleet.cluster(WORKERS, per_char=0.0002)
    deadly = [Job(DEATH_TEXT, 0, media, "GET") for media in ("ogg", "aac")]
    normal = env.jobs([0])[:3]
    repeats = 1 if env.p.quick else 2
    alive_after_first: list[bool] = []

    async def side(client: ChaosClient, m: Marks) -> None:
        m.mark("injected")
        await asyncio.gather(*(client.send(job) for job in deadly))
        alive_after_first.extend(w.proc.poll() is None for w in workers)
        await asyncio.gather(*(client.send(job) for job in deadly * repeats))
        await asyncio.gather(*(client.send(job) for job in normal))

    outcomes, marks = env.load([router.url], normal, sides=[side], steady=False)
    answered = [o for o in outcomes if o.media != "raw"]
    checks = [alive([router, *workers], "process"),
              Check("the deadly requests were answered", all(o.status for o in answered),
                    f"{sum(1 for o in answered if o.status)}/{len(answered)} got an HTTP answer")]
    return scenario_result("request-of-death", "14 request of death",
                           "GET 1000 x 'a' as ogg, aac; repeats", outcomes, marks,
                           recovery(outcomes, marks.get("injected")), checks,
                           workers_alive_after_first_try=sum(alive_after_first),
                           statuses=[f"{o.media} {o.status or o.detail}" for o in answered])


# ---- 16: a stream past its deadline --------------------------------------------------------------------------


def stream_deadline(env: Env) -> ScenarioResult:
    """A worker whose deadline (--request-timeout) passes mid-stream must end the stream visibly: a clean end of
    a short stream is indistinguishable from a short text."""
    text = " ".join(sentences()[:10])  # about 400 characters: 1.6 s of synthesis against a 1 s deadline
    workers, (router,) = env.fleet.cluster(1, per_char=0.004, prefix="deadline", extra=("--request-timeout", "1"))
    jobs = [Job(text, mode) for mode in ((1, 2, 0) if env.p.quick else (1, 2, 0, 1, 2, 0))]

    async def side(client: ChaosClient, m: Marks) -> None:
        m.mark("injected")
        for job in jobs:
            await client.send(job)

    outcomes, marks = env.load([router.url], jobs, sides=[side], steady=False)
    result = scenario_result("stream-deadline", "16 stream past deadline", "--request-timeout 1 s < 1.6 s synthesis",
                             outcomes, marks, None, [alive([router, *workers], "process")])
    result.recovery_applies = False  # every request outlives the deadline: each must fail visibly
    return result


# ---- the suite -----------------------------------------------------------------------------------------------

ScenarioFn = Callable[[Env], ScenarioResult]
SCENARIOS: list[tuple[str, ScenarioFn]] = [
    ("worker-kill", lambda e: worker_kill(e, streaming=False)),
    ("worker-kill-stream", lambda e: worker_kill(e, streaming=True)),
    ("rolling-sigterm", rolling_sigterm),
    ("router-kill", lambda e: router_stop(e, signal.SIGKILL)),
    ("router-term", lambda e: router_stop(e, signal.SIGTERM)),
    ("burst", burst_10x),
    ("bad-worker-500", lambda e: bad_worker(e, "500")),
    ("bad-worker-400", lambda e: bad_worker(e, "400")),
    ("bad-worker-reset", lambda e: bad_worker(e, "reset")),
    ("bad-worker-cut", lambda e: bad_worker(e, "cut")),
    ("slow-worker", slow_worker),
    ("idle-flood", idle_flood),
    ("slow-headers", slow_headers),
    ("request-of-death", request_of_death),
    ("operator-kill", lambda e: operator_kill(e.fleet.logs / "operator", e.monitor,
                                              hold=1.0 if e.p.quick else 2.0)),
    ("stream-deadline", stream_deadline),
    ("abandon-router", lambda e: abandon_scenario(e, through_router=True)),
    ("abandon-worker", lambda e: abandon_scenario(e, through_router=False)),
    ("bad-worker-503", lambda e: bad_worker(e, "503")),
    ("drain-overrun", drain_overrun),
]


def run(args: Any, console: Any, progress: Any, voice_dir: Path, out: Path) -> int:
    profile = Profile.of(args)
    only = {k.strip() for k in args.only.split(",") if k.strip()}
    unknown = only - {k for k, _ in SCENARIOS}
    if unknown:
        console.print(f"[red]unknown scenario(s): {', '.join(sorted(unknown))}[/]")
        return 2
    chosen = [(k, fn) for k, fn in SCENARIOS if not only or k in only]
    t0 = time.monotonic()
    hardening = Hardening.detect(READ_TIMEOUT, KEEPALIVE_TIMEOUT, MAX_CONNECTIONS)
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so every scenario's processes are stopped on the way out.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        results = _run_all(chosen, profile, hardening, voice_dir, args.logs, progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    wall = time.monotonic() - t0
    mode = "--quick" if profile.quick else "full"
    print_table(console, results, f"chaos ({mode}): every request succeeded, failed visibly or was lost "
                                  f"[{wall:.0f} s]")
    print_restart(console, results)
    flags = {k: getattr(args, k) for k in ("quick", "only", "rate", "seed")} | {
        "seconds": profile.seconds, "bound": profile.bound, "idle_sockets": profile.idle_sockets,
        "slow_headers": profile.slow_headers, "abandoned": profile.abandoned}
    command = "tts-cluster bench chaos" + ("".join(f" {a}" for a in sys.argv[3:]) if len(sys.argv) > 3 else "")
    data = report(results, command, flags, {"router": hardening.router, "worker": hardening.worker}, wall)
    path = write(out, data)
    console.print(f"wrote {path}")
    return 0 if data["passed"] else 1


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run_all(chosen: list[tuple[str, ScenarioFn]], profile: Profile, hardening: Hardening, voice_dir: Path,
             keep_logs: Optional[Path], progress: Any) -> list[ScenarioResult]:
    overall = progress.add_task("chaos scenarios", total=len(chosen))
    requests = progress.add_task("requests answered", total=None)
    results = []
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        logs = keep_logs or Path(tmp)
        for key, fn in chosen:
            progress.update(overall, description=f"chaos: {key}")
            results.append(_run_one(key, fn, profile, hardening, voice_dir, logs / key,
                                    lambda: progress.advance(requests)))
            progress.advance(overall)
    progress.update(requests, visible=False)
    return results


def _run_one(key: str, fn: ScenarioFn, profile: Profile, hardening: Hardening, voice_dir: Path, logs: Path,
             on_done: Callable[[], None]) -> ScenarioResult:
    logs.mkdir(parents=True, exist_ok=True)
    monitor = ProcMonitor().start()
    fleet = Fleet(voice_dir, logs, monitor, hardening)
    t0 = time.monotonic()
    try:
        result = fn(Env(profile, fleet, monitor, on_done))
    except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others' results
        result = ScenarioResult(key, key, "", error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        fleet.close()
        monitor.stop()
    result.measure(monitor)
    result.wall_s = time.monotonic() - t0
    return result
