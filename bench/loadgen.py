"""The load generator: closed loop (N clients, each sends its next request when the last one is answered) and open
loop (Poisson arrivals at a fixed rate, whatever the answers, so overload shows up as latency and refusals).

aiohttp keeps the generator's own CPU per request small: on a 2-core machine it shares the CPU with the workers and
the balancer it measures. Every request is recorded: status, latency, time to first audio byte, worker, retries.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp

from .stats import summarize

_ENGINE_MS = re.compile(r"engine;dur=([0-9.]+)")


@dataclass
class Sample:
    index: int  # position in the run's text list, so runs fed the same texts can be compared request by request
    chars: int
    offered_at: float  # seconds from the run's start: when the request was due (open loop) or sent (closed loop)
    status: int = 0  # 0: no HTTP answer at all (connection refused or cut before the headers)
    latency: float = 0.0
    ttfb: Optional[float] = None  # time to the first body byte
    worker: Optional[str] = None  # X-Worker-ID of the worker that answered
    retries: Optional[int] = None  # X-Retries from our router; None through a balancer that does not say
    engine_s: Optional[float] = None  # the worker's own engine time (Server-Timing), the job's service time
    error: Optional[str] = None
    voice: Optional[str] = None  # the catalog voice asked for; None: the default voice (api_v2's only one)


@dataclass
class Run:
    label: str
    samples: list[Sample]
    wall: float
    offered_rate: Optional[float] = None  # open loop: the arrival rate asked for
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return summarize(self.samples, self.wall, self.offered_rate)


def tts_body(text: str, voice: Optional[str] = None) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text, "text_lang": "en", "prompt_lang": "en", "ref_audio_path": "reference.wav",
                            "media_type": "raw"}
    if voice is not None:
        body["voice"] = voice
    return body


class LoadGenerator:
    """One client pool; `urls` are the entry points (balancer replicas) requests are spread over in turn."""

    def __init__(self, urls: list[str], timeout: float = 120.0,
                 on_done: Optional[Callable[[Sample], None]] = None) -> None:
        self.urls = urls
        self.timeout = timeout
        self.on_done = on_done
        self._turn = 0

    def _next_url(self) -> str:
        url = self.urls[self._turn % len(self.urls)]
        self._turn += 1
        return url

    async def _one(self, session: aiohttp.ClientSession, sample: Sample, text: str, t0: float) -> None:
        url = self._next_url()
        start = time.perf_counter()
        try:
            async with session.post(f"{url}/tts", json=tts_body(text, sample.voice)) as r:
                sample.status = r.status
                sample.worker = r.headers.get("x-worker-id")
                retries = r.headers.get("x-retries")
                sample.retries = int(retries) if retries is not None else None
                timing = _ENGINE_MS.search(r.headers.get("server-timing", ""))
                sample.engine_s = float(timing.group(1)) / 1000 if timing else None
                async for _chunk in r.content.iter_any():
                    if sample.ttfb is None:
                        sample.ttfb = time.perf_counter() - start
        except (TimeoutError, aiohttp.ClientError) as exc:
            sample.error = f"{type(exc).__name__}: {exc}"
            if 200 <= sample.status < 300:  # the body was cut after a good status: a failure all the same
                sample.status = 0
        sample.latency = time.perf_counter() - start
        if self.on_done:
            self.on_done(sample)

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def closed_loop(self, texts: list[str], clients: int, label: str) -> Run:
        samples = [Sample(i, len(t), 0.0) for i, t in enumerate(texts)]
        todo = iter(range(len(texts)))
        async with self._session() as session:
            t0 = time.perf_counter()

            async def client() -> None:
                for i in todo:
                    samples[i].offered_at = time.perf_counter() - t0
                    await self._one(session, samples[i], texts[i], t0)

            await asyncio.gather(*(client() for _ in range(clients)))
            wall = time.perf_counter() - t0
        return Run(label, samples, wall, extra={"clients": clients})

    async def open_loop(self, texts: list[str], arrivals: list[float], label: str,
                        at: Optional[dict[float, Callable[[], None]]] = None,
                        voices: Optional[Sequence[Optional[str]]] = None) -> Run:
        """Send texts[i] at arrivals[i] seconds from the start, in voices[i] when given. `at` maps a time to an
        action run then (a fault)."""
        samples = [Sample(i, len(t), a) for i, (t, a) in enumerate(zip(texts, arrivals, strict=True))]
        for sample, voice in zip(samples, voices if voices is not None else [None] * len(samples), strict=True):
            sample.voice = voice
        actions = sorted((at or {}).items())
        async with self._session() as session:
            t0 = time.perf_counter()
            pending = []
            for i, text in enumerate(texts):
                while actions and actions[0][0] <= arrivals[i]:
                    await _sleep_until(t0 + actions[0][0])
                    actions.pop(0)[1]()
                await _sleep_until(t0 + arrivals[i])
                pending.append(asyncio.create_task(self._one(session, samples[i], text, t0)))
            await asyncio.gather(*pending)
            wall = time.perf_counter() - t0
        rate = len(texts) / arrivals[-1] if arrivals and arrivals[-1] > 0 else None
        return Run(label, samples, wall, offered_rate=rate)


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def poisson_arrivals(count: int, rate: float, seed: int) -> list[float]:
    """Arrival times (seconds from 0) of a Poisson process at `rate` per second: the same for every run given the
    seed, so every balancer is offered exactly the same load."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(count):
        t += rng.expovariate(rate)
        out.append(t)
    return out
