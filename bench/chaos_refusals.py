"""Refusals that must not reach clients: a worker's 503 (full, draining, or its drain out of time) is retried by the
router on a peer with room, before any byte, so a client sees 503 only when no worker can take its request.

Scenario 19 (a worker answering 503 to everything while its /stats says it is idle) lives with the other bad
workers in `chaos`; this module has the check they share and scenario 20, a drain that runs out of time.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Optional

from .chaos_env import Env, Marks, alive, role_name, scenario_result, write_list
from .chaos_fleet import wait_healthy, wait_serving
from .chaos_load import ChaosClient, Job, Outcome
from .chaos_report import Check, ScenarioResult, recovery, served_again

# The doomed worker's drain timeout: shorter than the long requests it holds when SIGTERM comes.
DRAIN_TIMEOUT = 0.2


def no_503(outcomes: list[Outcome]) -> Check:
    """No client got a 503: each worker's refusal went to a peer with room (the load is half the peers' capacity)."""
    refused = [o for o in outcomes if o.status == 503]
    return Check("no 503 reached a client while a peer had room", not refused,
                 f"{len(refused)} of {len(outcomes)} requests answered 503; "
                 f"{sum(o.retries for o in outcomes)} retries by the router")


def drain_overrun(env: Env, held: int = 14) -> ScenarioResult:
    """A router that knows one worker, d1 (draining for only DRAIN_TIMEOUT s), gets `held` long whole requests:
    all queue there. Its two peers then join (discovery lists them) and d1 gets SIGTERM: its drain runs out of
    time with every one of them admitted, and it answers them all 503 at once ("retry on another worker"). More
    than the retry budget's floor of 10: each must still be retried on a peer, which has room, and reach its
    client whole. Requests sent before the peers joined may get the router's own 503 (d1 alone was full): only
    those sent after they joined are held to "no 503"."""
    # Room for all of them on either peer, besides the steady load: a 503 then has no excuse.
    room = ("--max-queue-size", str(held + 6))
    peers = env.fleet.workers(2, wait=False, extra=room)
    (doomed,) = env.fleet.workers(1, prefix="d", wait=False, extra=("--drain-timeout", str(DRAIN_TIMEOUT), *room))
    listing = env.fleet.logs / "drain-overrun-workers.txt"
    write_list(listing, [doomed])
    router = env.fleet.router([], workers_file=listing, wait=False)
    env.fleet.wait_ready([*peers, doomed, router])
    if not wait_healthy(router, 1, timeout=60.0):
        raise RuntimeError(f"{router.url} never counted d1 healthy")
    jobs = env.jobs([0, 1, 2])
    long_jobs = [Job(j.text, 0) for j in sorted(jobs, key=lambda j: len(j.text))[-held:]]
    exits: list[Optional[int]] = []
    overran: list[bool] = []

    def stop(m: Marks) -> None:
        write_list(listing, [doomed, *peers])
        for p in peers:
            wait_serving(router, p.url)
        m.mark("peers_in")
        m.mark("injected")
        exits.append(env.fleet.kill(doomed, signal.SIGTERM))
        overran.append("drain timeout" in doomed.log_text())  # read before the restart renames the log
        env.fleet.restart(doomed)
        wait_serving(router, doomed.url)
        m.mark("back")

    held_out: list[Outcome] = []

    async def side(client: ChaosClient, m: Marks) -> None:
        await asyncio.sleep(env.p.seconds / 4)
        sent = [asyncio.create_task(client.send(job)) for job in long_jobs]
        await asyncio.sleep(0.3)  # all admitted at d1, the one worker the router knows
        await asyncio.to_thread(stop, m)
        held_out.extend(await asyncio.gather(*sent))

    outcomes, marks = env.load([router.url], jobs, sides=[side])
    joined = marks.get("peers_in")
    after = [o for o in outcomes if joined is not None and o.sent_at >= joined and o not in held_out]
    back = served_again(outcomes, marks.get("back") or 1e9, lambda o: o.worker == role_name(env, doomed))
    checks = [no_503([*held_out, *after]),
              Check(f"the {held} requests d1 held all succeeded", len(held_out) == held and
                    all(o.verdict == "ok" for o in held_out),
                    f"{sum(1 for o in held_out if o.verdict == 'ok')}/{held} succeeded, "
                    f"{sum(1 for o in held_out if o.retries)} of them retried by the router; "
                    + "; ".join(sorted({o.detail for o in held_out if o.detail}))[:200]),
              alive([router, *peers, doomed], "process"),
              Check("the drain ran out of time and exited 0", exits == [0] and overran == [True],
                    f"exit codes {exits}; 'drain timeout' logged: {overran}")]
    return scenario_result("drain-overrun", "20 drain past its timeout",
                           f"SIGTERM d1 holding {held} (drain {DRAIN_TIMEOUT:g} s) as 2 peers join; restart",
                           outcomes, marks, recovery(outcomes, marks.get("injected"), back, needs_back=True),
                           checks, exit_codes=exits, retried_by_router=sum(o.retries for o in outcomes))
