"""Where a background voice load (the router's copy) runs among admitted jobs, in-process on the synthetic engine:
once nothing admitted waits, so the jobs admitted after it go first; past its idle wait, in admission order, so a
worker that is never idle still gets its copy. Either way between syntheses, never inside one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tts_common.schemas import TTSRequest
from tts_common.voices import parse_catalog
from tts_worker import scheduler as scheduler_module
from tts_worker.engines.base import StreamMode, SynthesisParams
from tts_worker.engines.synthetic import SyntheticEngine
from tts_worker.metrics import WorkerMetrics
from tts_worker.scheduler import Scheduler

pytestmark = pytest.mark.unit

VOICE = parse_catalog({"voices": [{"name": "copy", "synthetic": {"tone_hz": 300}}]}).voices[0]


def params() -> SynthesisParams:
    req = TTSRequest(text="One.", text_lang="en", prompt_lang="en", ref_audio_path="ref.wav")
    return SynthesisParams(request=req, mode=StreamMode.OFF, ref_audio=Path(__file__))


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    engine = SyntheticEngine(base_seconds=0.1, seconds_per_char=0.0, sample_rate=16000, voice_load_seconds=0.3)
    engine.loaded.limit = 2
    s = Scheduler(engine, max_queue_size=8, metrics=WorkerMetrics("w", "synthetic", "cpu"))
    s.start()
    yield s
    await s.close()


async def finished_at(s: Scheduler, name: str) -> float:
    job = s.submit(params(), name, time.monotonic() + 30)
    async for _ in s.chunks(job, asyncio.get_running_loop().create_future()):
        pass
    return time.monotonic()


async def loaded_at(s: Scheduler) -> float:
    while "copy" not in s.engine.loaded.names():
        await asyncio.sleep(0.005)
    return time.monotonic()


async def test_a_copy_waits_for_the_queue_to_empty_and_jobs_admitted_after_it_go_first(scheduler):
    first = asyncio.ensure_future(finished_at(scheduler, "first"))
    await asyncio.sleep(0.02)  # first is running
    assert scheduler.load_in_background(VOICE, frozenset())
    assert scheduler.voices_replicating() == ["copy"] and scheduler.queued_work_seconds() >= 0.3
    later = [asyncio.ensure_future(finished_at(scheduler, f"later{i}")) for i in range(2)]
    copy = asyncio.ensure_future(loaded_at(scheduler))
    done = await asyncio.gather(first, *later, copy)
    assert max(done[:3]) < done[3]  # every job, those admitted after the ask included, finished before the load
    await asyncio.sleep(0)
    assert scheduler.counters.background_loads == 1 and scheduler.voices_replicating() == []
    assert scheduler.counters.voice_load_waits == 0  # none of them waited for it


async def test_past_its_idle_wait_a_copy_takes_its_place_in_admission_order(scheduler, monkeypatch):
    monkeypatch.setattr(scheduler_module, "BACKGROUND_IDLE_WAIT_SECONDS", 0.0)
    first = asyncio.ensure_future(finished_at(scheduler, "first"))
    await asyncio.sleep(0.02)
    assert scheduler.load_in_background(VOICE, frozenset())
    later = asyncio.ensure_future(finished_at(scheduler, "later"))
    copy = asyncio.ensure_future(loaded_at(scheduler))
    t_first, t_later, t_copy = await asyncio.gather(first, later, copy)
    assert t_first < t_copy < t_later  # after the job admitted before it, before the one admitted after it
    assert scheduler.counters.voice_load_waits == 1  # the later job waited for it (and is counted so)
