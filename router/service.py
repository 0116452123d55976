"""The one object that owns the router's state: settings, HTTP client pool, worker pool, policy, counters."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Optional, Union

import aiohttp
import httpx

from .discovery import KubernetesDiscovery, StaticDiscovery
from .metrics import RouterMetrics
from .policy import Policy
from .pool import WorkerPool, WorkerState
from .settings import RouterSettings
from .stats import RequestCounters


class RetryBudget:
    """Token bucket: each request earns `ratio` of a retry, each retry spends one, with a floor of `floor` tokens.

    Retries stay a bounded fraction of traffic, so a cluster-wide failure is not multiplied into a retry storm.
    """

    def __init__(self, ratio: float, floor: float = 10.0) -> None:
        self.ratio = ratio
        self.floor = floor
        self.tokens = floor

    def deposit(self) -> None:
        self.tokens = min(self.tokens + self.ratio, self.floor * 10)

    def withdraw(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RouterService:
    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=200, keepalive_expiry=30)
        self.client = httpx.AsyncClient(
            limits=limits,
            timeout=httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout),
        )
        # The data path gets its own client: see `forward_session`.
        self._forward_session: Optional[aiohttp.ClientSession] = None
        self.pool = WorkerPool(self.client, settings.poll_interval, settings.stale_after, settings.eject_after)
        self.policy = Policy(settings.policy)
        self.metrics = RouterMetrics(self.pool)
        self.counters = RequestCounters()
        self.retry_budget = RetryBudget(settings.retry_budget)
        self.discovery: Union[StaticDiscovery, KubernetesDiscovery]
        if settings.discovery == "kubernetes":
            self.discovery = KubernetesDiscovery(settings, self.pool.sync)
        else:
            self.discovery = StaticDiscovery(settings.worker, settings.workers_file, self.pool.sync)

    async def start(self) -> None:
        await self.discovery.start()

    @property
    def forward_session(self) -> aiohttp.ClientSession:
        """The /tts data path's client. aiohttp spends about a fifth of httpx's CPU per forwarded request, which
        is most of what the router adds to a request's latency. Bodies pass through as sent (no decompression)."""
        if self._forward_session is None:  # made on first use, so it belongs to the serving loop
            self._forward_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.settings.connect_timeout, sock_read=self.settings.request_timeout
                ),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._forward_session

    async def close(self) -> None:
        await self.discovery.stop()
        await self.pool.close()
        await self.client.aclose()
        if self._forward_session is not None:
            await self._forward_session.close()

    @property
    def ready(self) -> bool:
        return bool(self.pool.healthy())

    def candidates(self, exclude: set[str]) -> list[WorkerState]:
        return [w for w in self.pool.healthy() if w.url not in exclude and w.has_room()]

    async def choose(self, chars: int, exclude: set[str]) -> Optional[WorkerState]:
        """A worker with room, waiting up to `capacity_wait` for one to free up; None if none does."""
        deadline = time.monotonic() + self.settings.capacity_wait
        while True:
            found = self.candidates(exclude)
            if found:
                worker = self.policy.choose(found, chars)
                worker.sent_since_poll += 1
                worker.work_since_poll += worker.cost(chars)
                return worker
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.pool.changed.clear()
            try:
                await asyncio.wait_for(self.pool.changed.wait(), remaining)
            except asyncio.TimeoutError:
                return None

    def retry_after(self) -> int:
        """When a slot is likely free anywhere: the soonest worker's admitted work, at least 1 s."""
        waits = []
        for w in self.pool.healthy():
            s = w.stats
            if s is not None:
                waits.append(w.admitted * (s.average_processing_time or 1.0) / max(1, s.capacity))
        return max(1, math.ceil(min(waits))) if waits else 1
