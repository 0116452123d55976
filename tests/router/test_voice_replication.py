"""A hot voice replicates ahead of need, through a real router in front of real synthetic workers whose voice loads
take time: under sustained load of one voice, a second worker loads it in the background and serves it once loaded,
and no request ever waits for that voice's load while a worker holds it (each worker counts a request that waited
for its own voice's load after the router saw the voice held elsewhere)."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest
import yaml

from support.params import tts_params
from support.wait import eventually

pytestmark = pytest.mark.process

LOAD_SECONDS = 0.5


def test_a_hot_voice_gets_a_second_copy_without_any_request_waiting_for_it(tmp_path, spawn_worker, spawn_router):
    catalog = tmp_path / "voices.yaml"
    catalog.write_text(yaml.safe_dump({"voices": [{"name": n, "synthetic": {"tone_hz": 200 + 300 * i}}
                                                  for i, n in enumerate(["hot", "side"])]}))
    args = ("--voices", str(catalog), "--max-loaded-voices", "2", "--synthetic-voice-load-seconds", str(LOAD_SECONDS),
            "--synthetic-base-seconds", "0.05", "--synthetic-seconds-per-char", "0.002")
    workers = [spawn_worker(*args) for _ in range(2)]
    # A short window, so the test's load is sustained pressure within a second.
    router = spawn_router(*workers, args=("--replicate-window", "0.3"))

    def stats() -> list[dict[str, object]]:
        return [httpx.get(f"{w.url}/stats", timeout=10).json() for w in workers]

    def say(client: httpx.Client) -> str:
        r = client.post(f"{router.url}/tts", json=tts_params(text="A tone for the hot voice.", media_type="raw",
                                                              voice="hot"))
        assert r.status_code == 200, r.text
        return r.headers["x-worker-id"]

    with httpx.Client(timeout=30) as client:
        first = say(client)  # held nowhere: this one request waits for the load, on one worker
    assert [s["loaded_voices"] for s in stats()].count(["hot"]) == 1

    async def load_until_copied() -> None:
        # Six clients in closed loop: about 6 x 0.1 s of work queued at the one holder, above half a load's time.
        deadline = time.monotonic() + 30

        async def client_loop() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                while time.monotonic() < deadline and not all("hot" in s["loaded_voices"] for s in stats()):
                    r = await client.post(f"{router.url}/tts", json=tts_params(
                        text="A tone for the hot voice.", media_type="raw", voice="hot"))
                    assert r.status_code == 200, r.text

        await asyncio.gather(*(client_loop() for _ in range(6)))

    asyncio.run(load_until_copied())
    after = eventually(lambda: (s := stats()) and all(not x["voices_replicating"] for x in s) and s)
    assert all("hot" in s["loaded_voices"] for s in after), after  # copied while under load
    assert sum(int(s["voice_background_loads"]) for s in after) == 1
    # The copy was the background load's: nobody waited for it, and only the very first requests (sent while the
    # voice was held nowhere) waited for a load of their voice at all, all on the first worker.
    assert sum(int(s["voice_load_waits_held_elsewhere"]) for s in after) == 0, after
    second = next(s for s in after if s["worker_id"] != first)
    assert second["voice_own_load_waits"] == 0 and second["voice_loads"] == 1, second

    async def burst() -> list[str]:
        async with httpx.AsyncClient(timeout=30) as client:
            rs = await asyncio.gather(*(client.post(f"{router.url}/tts", json=tts_params(
                text="A tone for the hot voice.", media_type="raw", voice="hot")) for _ in range(6)))
        assert all(r.status_code == 200 for r in rs)
        return [r.headers["x-worker-id"] for r in rs]

    assert second["worker_id"] in asyncio.run(burst())  # and it serves the voice now, as a holder

    # Pressure over: the router asks for no more copies (there is nowhere left to put one anyway), and the copies
    # stay for the LRU to evict when another voice needs the slot.
    with httpx.Client(timeout=30) as client:
        for _ in range(3):
            say(client)
    assert sum(int(s["voice_background_loads"]) for s in stats()) == 1

    # The router's own count of the copy, on its /metrics: asked once, loaded once, nothing given up.
    copies = dict(re.findall(r'^ttsc_router_voice_copies_total\{result="(\w+)"\} (\S+)$',
                             httpx.get(f"{router.url}/metrics", timeout=10).text, re.M))
    assert copies == {"asked": "1.0", "loaded": "1.0", "given_up": "0.0"}, copies
