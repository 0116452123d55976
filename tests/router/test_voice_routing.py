"""Routing by voice, in-process on the router's pool and policy, then through a real router in front of real
synthetic workers: a voice goes where it is held, one worker loads a new voice unless its queue says more are
needed, and unknown voices are a 404 from the router."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import yaml

from support.params import tts_params
from support.router_pool import pool_of, worker
from tts_router.policy import make_policy
from tts_router.pool import UnknownVoice

VOICES = ["low", "mid", "high"]


def holding(url: str, loaded: list[str], **kw: object):
    return worker(url, url, voices=VOICES, loaded_voices=loaded, voice_load_seconds={"mid": 3.0}, **kw)


async def reserve(pool, voice: str | None, chars: int = 20):
    lease = await pool.reserve(chars, set(), make_policy("least-work", seed=1), 0.0, voice)
    assert lease is not None
    lease.succeeded()
    return lease.worker.url


@pytest.mark.unit
async def test_a_voice_goes_where_it_is_held():
    pool = pool_of(holding("a", ["low"]), holding("b", ["mid"]))
    assert await reserve(pool, "mid") == "b"
    assert await reserve(pool, "low") == "a"


@pytest.mark.unit
async def test_one_worker_loads_a_new_voice_and_the_next_requests_follow_it():
    pool = pool_of(holding("a", []), holding("b", []))
    first = await reserve(pool, "high")
    assert [await reserve(pool, "high") for _ in range(3)] == [first] * 3  # sent there: held, or loading


@pytest.mark.unit
async def test_a_voice_queued_or_loading_counts_as_held_and_an_evicted_one_does_not():
    pool = pool_of(holding("a", [], voices_queued=["mid"]), holding("b", []))
    assert await reserve(pool, "mid") == "a"  # a's admitted requests want mid: it is about to hold it
    pool = pool_of(holding("a", [], voices_loading=["mid"]), holding("b", []))
    assert await reserve(pool, "mid") == "a"
    # Sent mid to both long ago, but their last polls say neither holds it now (evicted): the cost is a load on
    # either, and the one with the most room takes it.
    evicted = pool_of(holding("a", ["low"]), holding("b", ["low"], capacity=20))
    assert await reserve(evicted, "mid") == "b"


@pytest.mark.unit
async def test_with_the_voice_held_nowhere_its_load_is_priced_with_the_voice_it_evicts():
    # high is held nowhere; every worker is full with one voice. Loading it on a evicts low, which nobody else holds
    # (its next request pays a load too); on b or c it evicts a copy of mid that the other still holds.
    full = {"max_loaded_voices": 1}
    pool = pool_of(holding("a", ["low"], **full), holding("b", ["mid"], **full), holding("c", ["mid"], **full))
    assert await reserve(pool, "high") in ("b", "c")


@pytest.mark.unit
async def test_a_long_queue_where_the_voice_is_held_keeps_it_there():
    # b holds mid with 10 s of work queued; a would load mid in 3 s, but the request would wait for that load while
    # b holds the voice: it goes to b (another copy is the replicator's to start, in the background).
    pool = pool_of(holding("a", []), holding("b", ["mid"], queued_work_seconds=10.0))
    assert await reserve(pool, "mid") == "b"
    # Loading (or queued for, or just sent) is not held: while b has it loaded, a gets none of its requests.
    for kw in ({"voices_loading": ["mid"]}, {"voices_queued": ["mid"]}, {"voices_replicating": ["mid"]}):
        pool = pool_of(holding("a", [], **kw), holding("b", ["mid"], queued_work_seconds=10.0))
        assert {await reserve(pool, "mid") for _ in range(3)} == {"b"}, kw


@pytest.mark.unit
async def test_a_full_holder_is_waited_for_before_another_copy_is_loaded_for_one_request():
    full = holding("b", ["mid"], queue_depth=10)  # capacity 10: no room
    pool = pool_of(holding("a", []), full)
    waiter = asyncio.ensure_future(pool.reserve(20, set(), make_policy("least-work", seed=1), 5.0, "mid"))
    await asyncio.sleep(0)
    assert not waiter.done()  # waiting for b, though a has room
    full.stats = full.stats.model_copy(update={"queue_depth": 3})
    pool.changed.set()
    lease = await asyncio.wait_for(waiter, 5.0)
    assert lease is not None and lease.worker.url == "b" and not lease.held_elsewhere
    # Out of time (no wait allowed), the request goes where it can: a loads mid, and is marked as held elsewhere.
    full.stats = full.stats.model_copy(update={"queue_depth": 10})
    lease = await pool.reserve(20, set(), make_policy("least-work", seed=1), 0.0, "mid")
    assert lease is not None and lease.worker.url == "a" and lease.held_elsewhere


@pytest.mark.unit
async def test_workers_without_the_voice_are_never_chosen_and_unknown_voices_are_named():
    pool = pool_of(holding("a", []), worker("b", "b", voices=["other"]))
    assert {await reserve(pool, "low") for _ in range(4)} == {"a"}
    with pytest.raises(UnknownVoice, match=r"'nobody' is not in the voice catalog \(high, low, mid, other\)"):
        pool.check_voice("nobody")
    pool.check_voice(None)  # the default voice: every worker


@pytest.mark.unit
async def test_with_the_voice_held_nowhere_the_worker_with_most_room_and_fewest_voices_loads_it():
    # Equal cost everywhere (idle, same load time): room first, then the fewest voices held.
    crowded = holding("crowded", ["low", "mid"])
    roomy = holding("roomy", ["low"], capacity=20)
    sparse = holding("sparse", [])
    assert {await reserve(pool_of(holding("a", ["low", "mid"]), holding("b", ["low"]), sparse), "high")
            for _ in range(5)} == {"sparse"}
    assert await reserve(pool_of(crowded, roomy, holding("b", [])), "high") == "roomy"


@pytest.mark.unit
async def test_voice_blind_least_work_ignores_where_a_voice_is_held():
    pool = pool_of(holding("a", ["mid"], queued_work_seconds=0.5), holding("b", []))
    assert await reserve(pool, "mid") == "a"  # aware: b would first spend 3 s loading mid
    pool.voice_affinity = False
    assert await reserve(pool, "mid") == "b"  # blind: b has less work queued, so it loads mid
    assert not pool.workers["b"].voices_sent  # and the blind router keeps no affinity either


@pytest.mark.process
def test_through_a_real_router(tmp_path, spawn_worker, spawn_router):
    catalog = tmp_path / "voices.yaml"
    catalog.write_text(yaml.safe_dump({"voices": [{"name": n, "synthetic": {"tone_hz": 200 + 300 * i}}
                                                  for i, n in enumerate(VOICES)]}))
    args = ("--voices", str(catalog), "--max-loaded-voices", "1", "--synthetic-voice-load-seconds", "0.3")
    workers = [spawn_worker(*args) for _ in range(2)]
    router = spawn_router(*workers)

    async def burst(voice: str, n: int) -> list[str]:
        async with httpx.AsyncClient(timeout=30) as client:
            rs = await asyncio.gather(*(client.post(f"{router.url}/tts", json=tts_params(
                text="A tone.", media_type="raw", voice=voice)) for _ in range(n)))
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
        return [r.headers["x-worker-id"] for r in rs]

    low = asyncio.run(burst("low", 4))
    assert len(set(low)) == 1  # one worker loaded it; the others followed
    high = asyncio.run(burst("high", 4))
    assert len(set(high)) == 1
    r = httpx.post(f"{router.url}/tts", json=tts_params(voice="nobody"), timeout=30)
    assert r.status_code == 404 and r.json()["field"] == "voice" and "low, mid" in r.json()["message"]
    held = {w["url"]: w["voices"] for w in httpx.get(f"{router.url}/concurrent_stats").json()["workers"]}
    assert sorted(v for vs in held.values() for v in vs) in (["high"], ["high", "low"])
    # A request naming a voice needs no reference clip of its own: the voice is the worker's to fill in.
    bare = {"text": "A tone.", "text_lang": "en", "media_type": "raw", "voice": "mid"}
    r = httpx.post(f"{router.url}/tts", json=bare, timeout=30)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{router.url}/tts", json={k: v for k, v in bare.items() if k != "voice"}, timeout=30)
    assert r.status_code == 400 and r.json()["message"] == "ref_audio_path is required"
