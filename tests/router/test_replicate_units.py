"""Replicating a hot voice ahead of need, in-process: the pure decisions (routing to holders only, the pressure's
hysteresis, where a copy goes and what it must not evict) and the replicator's memory between requests, with the
call to the worker faked."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from support.router_pool import pool_of, worker
from tts_router.policy import LeastWork, make_policy
from tts_router.pool import WorkerState
from tts_router.replicate import (
    ReplicaRules,
    Replicator,
    can_take,
    holders_wait,
    pressure_step,
    replica_target,
    sole_copies,
)

pytestmark = pytest.mark.unit

VOICES = ["hot", "warm", "cold", "rare"]
HOT = {"hot": 1.0}  # demand: engine seconds asked per second


def w(url: str, loaded: list[str], **kw: object) -> WorkerState:
    state = worker(url, url, voices=VOICES, loaded_voices=loaded, max_loaded_voices=2, **kw)
    state.polled_at = time.monotonic()
    return state


# -- routing: holders only ---------------------------------------------------------------------------------------
def test_a_request_for_a_voice_held_elsewhere_never_goes_to_a_worker_still_loading_it():
    policy = LeastWork(random.Random(3))
    holder = w("holder", ["hot"], queue_depth=9, queued_work_seconds=30.0)  # long queue
    loading = w("loading", [], voices_loading=["hot"])  # idle, and hot is nearly there
    queued = w("queued", [], voices_queued=["hot"], voices_replicating=["hot"])
    idle = w("idle", [])
    candidates = [holder, loading, queued, idle]
    for chars in (1, 20, 500):
        # The pool gives a zero load cost where the voice is on its way: that must not win while it is held.
        loads = {"holder": 0.0, "loading": 0.0, "queued": 0.0, "idle": 2.0}
        assert {policy.choose(candidates, chars, 0.01, loads, frozenset({"holder"})).url
                for _ in range(20)} == {"holder"}
    # Held nowhere: the worker it is on its way to takes it (it waits for that load, as it must).
    assert policy.choose(candidates[1:], 20, 0.01, {"loading": 0.0, "queued": 0.0, "idle": 2.0}).url in (
        "loading", "queued")


async def test_the_pool_routes_to_holders_only_and_marks_requests_whose_voice_is_held_elsewhere():
    pool = pool_of(w("a", ["hot"], queued_work_seconds=5.0), w("b", ["hot"]), w("c", [], voices_loading=["hot"]))
    got = []
    for _ in range(6):
        lease = await pool.reserve(20, set(), make_policy("least-work", seed=1), 0.0, "hot")
        assert lease is not None
        got.append((lease.worker.url, lease.held_elsewhere))
        lease.succeeded()
    assert {url for url, _ in got} == {"b"} and all(elsewhere for _, elsewhere in got)  # a holds it too
    lease = await pool.reserve(20, set(), make_policy("least-work", seed=1), 0.0, "cold")
    assert lease is not None and not lease.held_elsewhere  # cold is held nowhere


# -- pressure: sustained, not one burst ---------------------------------------------------------------------------
def test_pressure_fires_only_after_the_window_and_ends_below_half_the_threshold():
    since, fired = pressure_step(None, 0.4, 0.5, now=10.0, window=1.0)
    assert (since, fired) == (None, False)  # below: nothing
    since, fired = pressure_step(None, 0.6, 0.5, now=10.0, window=1.0)
    assert (since, fired) == (10.0, False)  # above: the clock starts
    since, fired = pressure_step(since, 0.3, 0.5, now=10.5, window=1.0)
    assert (since, fired) == (10.0, False)  # between half and the threshold: it goes on
    since, fired = pressure_step(since, 0.6, 0.5, now=11.0, window=1.0)
    assert (since, fired) == (10.0, True)  # lasted the window
    since, fired = pressure_step(since, 0.2, 0.5, now=11.1, window=1.0)
    assert (since, fired) == (None, False)  # below half: over
    assert pressure_step(None, 0.6, 0.5, now=1.0, window=0.0) == (1.0, True)  # no window: at once


def test_the_holders_wait_is_the_best_holders_queue():
    a = w("a", ["hot"], queued_work_seconds=3.0)
    b = w("b", ["hot"], queued_work_seconds=1.0)
    assert holders_wait([a, b], 20, 0.01) == 1.0
    assert holders_wait([w("full", ["hot"], queue_depth=10)], 20, 0.01) == float("inf")
    assert holders_wait([], 20, 0.01) == float("inf")


# -- where a copy goes, and what it must not evict ---------------------------------------------------------------
def test_a_copy_never_evicts_a_sole_copy_and_goes_where_it_holds_up_fewest_requests():
    holder = w("holder", ["hot", "warm"], queued_work_seconds=4.0)
    only_cold = w("only-cold", ["cold", "rare"])  # both sole copies: no slot for hot without evicting one
    spare = w("spare", ["warm", "rare2"])  # warm is held on holder too
    assert sole_copies(only_cold, [holder, spare]) == {"cold", "rare"}
    assert not can_take(only_cold, frozenset({"cold", "rare"}))
    target = replica_target("hot", [holder, only_cold, spare], 20, 0.01, HOT)
    assert target is not None and target[0] is spare and target[1] == {"rare2"}
    # A free slot takes it, its sole copies protected all the same (the worker may pick its victim anew).
    free = w("free", ["rare3"], queued_work_seconds=0.5)
    target = replica_target("hot", [holder, only_cold, free], 20, 0.01, HOT)
    assert target is not None and target[0] is free and target[1] == {"rare3"}
    # Fewer sole copies first (a load there holds up fewer voices' only worker), then the sooner finish.
    target = replica_target("hot", [holder, only_cold, free, spare], 20, 0.01, HOT)
    assert target is not None and target[0] is spare  # one sole copy each: spare is idle
    # Weighed by demand: the requests for a voice only it holds would wait behind the load.
    target = replica_target("hot", [holder, only_cold, free, spare], 20, 0.01, {**HOT, "rare2": 0.5, "rare3": 0.01})
    assert target is not None and target[0] is free  # busier, but its sole voice is asked for little
    empty = w("empty", [], queued_work_seconds=0.5)
    target = replica_target("hot", [holder, only_cold, free, spare, empty], 20, 0.01, HOT)
    assert target is not None and target[0] is empty and target[1] == frozenset()
    # Nowhere to put it without evicting a sole copy, a pinned voice or one its queue wants: no copy.
    pinned = w("pinned", ["warm", "rare2"], pinned_voices=["rare2"], voices_queued=["warm"])
    assert replica_target("hot", [holder, only_cold, pinned], 20, 0.01, HOT) is None
    # Never where it is held, loading or already asked for.
    assert replica_target("hot", [holder, w("l", [], voices_loading=["hot"]),
                                  w("r", [], voices_replicating=["hot"])], 20, 0.01, HOT) is None


def test_a_copy_displaces_only_a_copy_less_needed_than_itself():
    # warm is on two workers; hot on one. Each copy of hot is asked for 0.8 of a worker.
    holder = w("holder", ["hot", "warm"])
    other = w("other", ["warm", "cold"])
    healthy = [holder, other, w("third", ["cold", "rare"])]
    # warm asked for 0.3: without other's copy, holder's would carry 0.3, under half of hot's 0.8: it may go.
    target = replica_target("hot", healthy, 20, 0.01, {"hot": 0.8, "warm": 0.3})
    assert target is not None and target[0] is other and "warm" not in target[1]
    # At 0.5 it is less needed than hot, but not by the margin (half): kept, so no slot for hot.
    assert replica_target("hot", healthy, 20, 0.01, {"hot": 0.8, "warm": 0.5, "cold": 0.9}) is None
    # warm asked for 1.0: alone on holder it would carry 1.0 >= 0.8: kept, and cold too (it is on third as well,
    # but asked for 0.9 per remaining copy): no room for hot anywhere.
    assert replica_target("hot", healthy, 20, 0.01, {"hot": 0.8, "warm": 1.0, "cold": 0.9}) is None
    # Asked for nothing lately, every copy of hot would displace nothing: a voice nobody asks for is not copied.
    assert replica_target("hot", healthy, 20, 0.01, {}) is None


# -- the replicator: asks once the pressure lasts, counts the copy once loaded -------------------------------------
async def test_the_replicator_asks_once_per_voice_and_counts_the_copy_only_once_its_poll_says_loaded():
    asked: list[tuple[str, str, frozenset[str]]] = []

    async def ask(worker: WorkerState, voice: str, protect: frozenset[str]) -> bool:
        asked.append((worker.url, voice, protect))
        return True

    rep = Replicator(ReplicaRules(wait_ratio=0.5, window=0.05, min_share=0.0), ask)
    holder = w("holder", ["hot", "cold"], queued_work_seconds=3.0)
    other = w("other", ["warm"])
    healthy = [holder, other]
    rep.consider("hot", healthy, 20, 0.01, load_seconds=1.0)  # 3 s > 0.5 s: pressure begins
    await asyncio.sleep(0)
    assert asked == [] and "hot" in rep.pressure  # one burst is not enough
    deadline = time.monotonic() + 5
    while not asked and time.monotonic() < deadline:  # the window passes while the wait stays high
        await asyncio.sleep(0.01)
        rep.consider("hot", healthy, 20, 0.01, load_seconds=1.0)
    assert asked == [("other", "hot", frozenset({"warm"}))] and rep.counts.asked == 1
    for _ in range(5):  # under way: no second copy, whatever the pressure
        await asyncio.sleep(0.06)
        rep.consider("hot", healthy, 20, 0.01, load_seconds=1.0)
    assert len(asked) == 1 and "hot" in rep.pending
    # Its poll says loading, then loaded: counted then, and the pressure's clock starts over.
    other.stats = other.stats.model_copy(update={"voices_loading": ["hot"]})  # type: ignore[union-attr]
    other.polled_at = time.monotonic()
    rep.consider("hot", healthy, 20, 0.01, load_seconds=1.0)
    assert rep.counts.loaded == 0 and "hot" in rep.pending
    other.stats = other.stats.model_copy(update={"voices_loading": [], "loaded_voices": ["warm", "hot"]})  # type: ignore[union-attr]
    other.polled_at = time.monotonic()
    holder.stats = holder.stats.model_copy(update={"queued_work_seconds": 0.0})  # type: ignore[union-attr]
    rep.consider("hot", healthy, 20, 0.01, load_seconds=1.0)
    assert rep.counts.loaded == 1 and not rep.pending and "hot" not in rep.pressure and len(asked) == 1


async def test_a_refused_or_vanished_copy_is_given_up_so_another_can_be_asked():
    answers = [False]  # then True

    async def ask(worker: WorkerState, voice: str, protect: frozenset[str]) -> bool:
        return answers.pop(0) if answers else True

    async def answered() -> None:
        deadline = time.monotonic() + 5
        while rep._tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    rep = Replicator(ReplicaRules(wait_ratio=0.5, window=0.0, min_share=0.0), ask)
    holder = w("holder", ["hot"], queued_work_seconds=3.0)
    other = w("other", [])
    rep.consider("hot", [holder, other], 20, 0.01, load_seconds=1.0)
    await answered()
    assert rep.counts.given_up == 1 and not rep.pending  # refused: forgotten at once
    rep.consider("hot", [holder, other], 20, 0.01, load_seconds=1.0)
    await answered()
    assert rep.counts.asked == 2 and rep.pending["hot"].answered_at is not None
    # Taken, then a poll after the answer shows it neither loaded, loading nor queued: evicted or failed.
    other.polled_at = time.monotonic() + 1
    rep.consider("hot", [holder, other], 20, 0.01, load_seconds=1.0)
    assert rep.counts.given_up == 2
    assert rep.counts.asked == 3  # the pressure goes on (no window here): the next copy is asked for at once
    await rep.close()


async def test_a_voice_asked_for_little_is_not_copied_however_long_its_holders_queue():
    asked: list[str] = []

    async def ask(worker: WorkerState, voice: str, protect: frozenset[str]) -> bool:
        asked.append(voice)
        return True

    # One worker's quarter: 20 chars x 0.01 s = 0.2 s per request, over a 10 s time constant, is 0.02 a request.
    rep = Replicator(ReplicaRules(wait_ratio=0.5, window=0.0, min_share=0.25), ask)
    holder = w("holder", ["hot"], queued_work_seconds=3.0)
    healthy = [holder, w("other", [])]
    for _ in range(5):
        rep.consider("hot", healthy, 20, 0.01, load_seconds=1.0)
    assert asked == [] and 0.09 < rep.current_demand(time.monotonic())["hot"] < 0.11
    for _ in range(10):  # now asked for about 0.3 of a worker: copied
        rep.consider("hot", healthy, 20, 0.01, load_seconds=1.0)
    await asyncio.sleep(0)
    assert asked == ["hot"]
    await rep.close()


async def test_a_voice_a_sent_load_will_evict_stops_counting_as_held_there_until_a_poll_says_otherwise():
    # a holds hot (least recently used) and warm, both slots full; b holds hot too.
    a = w("a", ["hot", "warm"])
    b = w("b", ["hot"], queued_work_seconds=1.0)
    pool = pool_of(a, b)
    lease = await pool.reserve(20, {"b"}, make_policy("least-work", seed=1), 0.0, "cold")  # held nowhere: a loads it
    assert lease is not None and lease.worker is a
    lease.succeeded()
    assert a.evicting == {"hot": "cold"} and not a.has_loaded("hot")
    a.settle_evictions()  # a poll before the load shows: cold is on its way (just sent), so nothing changes
    assert a.evicting == {"hot": "cold"}
    # hot goes to b now, however much shorter a's queue looks, and is not taken as held on a by anyone.
    for _ in range(3):
        lease = await pool.reserve(20, set(), make_policy("least-work", seed=1), 0.0, "hot")
        assert lease is not None and lease.worker is b and not lease.held_elsewhere
        lease.succeeded()
    # The load done, a's poll is the truth again (here: it kept hot after all, and evicted warm).
    assert a.stats is not None
    a.stats = a.stats.model_copy(update={"loaded_voices": ["hot", "cold"]})
    a.voices_sent.clear()
    a.settle_evictions()  # what each poll does once it has the stats
    assert a.has_loaded("hot") and not a.evicting
