"""The one object that owns the router's state: settings, HTTP client pool, worker pool, policy, counters."""

from __future__ import annotations

import asyncio
from typing import Optional, Union

import aiohttp

from .default_voice import DefaultVoice
from .discovery import KubernetesDiscovery, StaticDiscovery
from .health import OutlierRules
from .metrics import RouterMetrics
from .poison import PoisonMemory
from .policy import make_policy
from .pool import WorkerPool
from .replicate import ReplicaRules, Replicator, http_ask
from .settings import RouterSettings
from .stats import RequestCounters

UPSTREAM_KEEPALIVE_SECONDS = 3.0


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
        # Polls and admin fan-out; the data path has its own client (`forward_session`). Made here, inside the
        # serving loop's lifespan, so both belong to that loop.
        self.control_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS),
            timeout=aiohttp.ClientTimeout(total=settings.request_timeout, sock_connect=settings.connect_timeout),
        )
        # The data path gets its own client: see `forward_session`.
        self._forward_session: Optional[aiohttp.ClientSession] = None
        rules = OutlierRules(consecutive_failures=settings.eject_after, base_ejection_seconds=settings.ejection_seconds,
                             max_ejected_share=settings.max_ejected_share)
        self.pool = WorkerPool(self.control_session, settings.poll_interval, settings.stale_after, settings.eject_after, rules,
                               voice_affinity=settings.voice_affinity)
        # Voice-aware routing copies a voice under pressure ahead of need; voice-blind never does.
        self.replicator: Optional[Replicator] = None
        if settings.voice_affinity:
            token = settings.admin_token.get_secret_value() if settings.admin_token else ""
            self.replicator = Replicator(ReplicaRules(settings.replicate_wait_ratio, settings.replicate_window,
                                                      settings.replicate_min_share),
                                         http_ask(self.control_session, token))
            self.pool.replicas = self.replicator
        self.default_voice = DefaultVoice.starting_with(self.pool, settings.default_gpt_weights,
                                                        settings.default_sovits_weights)
        self.pool.follow_default_voice(self.default_voice.current)
        self.policy = make_policy(settings.policy)
        replicator = self.replicator
        self.metrics = RouterMetrics(self.pool, (lambda: dict(vars(replicator.counts))) if replicator else None)
        self.counters = RequestCounters()
        self.retry_budget = RetryBudget(settings.retry_budget)
        self.poison = PoisonMemory()
        # One rolling /control at a time: two would take down two workers at once.
        self.control_lock = asyncio.Lock()
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
                # Idle connections are dropped before the workers' own keep-alive timeout (5 s by default)
                # closes them, so a request is never sent on a socket the worker is closing at that moment.
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.settings.connect_timeout, sock_read=self.settings.request_timeout
                ),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._forward_session

    async def close(self) -> None:
        await self.discovery.stop()
        if self.replicator is not None:
            await self.replicator.close()
        await self.pool.close()
        await self.control_session.close()
        if self._forward_session is not None:
            await self._forward_session.close()

    @property
    def ready(self) -> bool:
        return bool(self.pool.healthy())
