"""api_v2's admin calls through the router, with the router's token: weight and reference switches go to every
worker that is not ejected at once; /control restarts (or exits) one worker at a time, each serving again before
the next is touched, so the cluster keeps answering throughout."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

import aiohttp
from yarl import URL

from tts_common.auth import admin_refusal
from tts_common.logs import log_fields

from .default_voice import Switched
from .service import RouterService

log = logging.getLogger("tts_router.admin")


class AdminForbidden(Exception):
    """No router token configured, or the caller did not send it: 403."""


class NoWorker(Exception):
    """Nothing to send the call to: 503."""


class BadCommand(Exception):
    """A /control command api_v2 does not know (or none): 400."""


class ControlBusy(Exception):
    """A rolling /control is already under way: 409."""


CONTROL_COMMANDS = ("restart", "exit")


@dataclass
class FanOut:
    """Each worker's answer by URL, and the first refusal (status, body) if any worker refused."""

    per_worker: dict[str, dict[str, Any]]
    first_failure: tuple[int, dict[str, Any]] | None


def _authorize(svc: RouterService, authorization: str) -> str:
    """The token to send on, or AdminForbidden."""
    refusal = admin_refusal(svc.settings.admin_token, authorization,
                            "configure an admin token (TTSC_ROUTER_ADMIN_TOKEN)",
                            open_to_all=svc.settings.allow_unauthenticated_admin)
    if refusal:
        raise AdminForbidden(refusal)
    return svc.settings.admin_token.get_secret_value() if svc.settings.admin_token else ""


def _targets(svc: RouterService) -> list[str]:
    workers = [w.url for w in svc.pool.ordered() if not w.ejected]
    if not workers:
        raise NoWorker("no worker to send it to")
    return workers


async def _call(svc: RouterService, url: str, path: str, query: str, token: str) -> tuple[int, dict[str, Any]]:
    target = URL(f"{url}{path}" + (f"?{query}" if query else ""), encoded=True)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        async with svc.control_session.get(target, headers=headers) as r:
            text = await r.text()
            try:
                body = await r.json(content_type=None)
            except ValueError:
                body = {"message": text[:200]}
            return r.status, body if isinstance(body, dict) else {"message": str(body)[:200]}
    except (TimeoutError, aiohttp.ClientError) as exc:
        return 502, {"message": f"{type(exc).__name__}: {exc}"}


async def fan_out(svc: RouterService, path: str, query: str, authorization: str) -> FanOut:
    token = _authorize(svc, authorization)
    if svc.control_lock.locked():  # a worker restarted mid-roll would come back on its yaml's weights
        raise ControlBusy("a rolling /control is under way: retry the switch when it is done")
    urls = _targets(svc)
    answers = await asyncio.gather(*(_call(svc, url, path, query, token) for url in urls))
    per_worker = {url: {"status": status, **body} for url, (status, body) in zip(urls, answers, strict=True)}
    failed = [(status, body) for status, body in answers if status != 200]
    log_fields(log, "admin fan-out", path=path, workers=len(urls), failed=len(failed))
    return FanOut(per_worker, failed[0] if failed else None)


class MissingPath(Exception):
    """A weight switch without weights_path: 400, as a worker answers it."""


async def switch_weights(svc: RouterService, kind: str, query: str, authorization: str) -> Switched:
    """A switch of the cluster's default voice: on every worker or none, then kept by the router
    (`default_voice`)."""
    token = _authorize(svc, authorization)
    if svc.control_lock.locked():  # a worker restarted mid-roll would come back on its yaml's weights
        raise ControlBusy("a rolling /control is under way: retry the switch when it is done")
    path = (parse_qs(query).get("weights_path") or [""])[0]
    if not path:
        raise MissingPath(f"{kind} weight path is required")
    urls = _targets(svc)

    async def call(url: str, route: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return await _call(svc, url, route, urlencode(params), token)

    return await svc.default_voice.switch(kind, path, call, urls)


def worker_caller(svc: RouterService) -> Any:
    """How the router's default voice reaches a worker on its own (bringing a restarted worker to the choice)."""
    token = svc.settings.admin_token.get_secret_value() if svc.settings.admin_token else ""

    async def call(url: str, route: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return await _call(svc, url, route, urlencode(params), token)

    return call


async def _serving_again(svc: RouterService, url: str, since: float, timeout: float) -> bool:
    """Whether the worker at `url` runs a process started after `since` (a monotonic time) and is ready, within
    `timeout` seconds. A restart re-executes the worker, an exit is restarted by its supervisor (`tts-cluster up`,
    the kubelet); either way its uptime starts again."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        try:
            async with svc.control_session.get(f"{url}/stats", timeout=aiohttp.ClientTimeout(total=2)) as r:
                stats = await r.json(content_type=None) if r.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, ValueError):
            stats = None
        if isinstance(stats, dict) and stats.get("ready") and not stats.get("draining"):
            uptime = stats.get("uptime_seconds")
            # ... and back in this router's pool (discovery re-listed it, polls see it, not ejected), or the next
            # worker's restart would leave fewer to route to than the roll promises
            pooled = svc.pool.workers.get(url)
            now = time.monotonic()
            if (isinstance(uptime, (int, float)) and uptime < now - since and pooled is not None
                    and pooled.healthy(now, svc.pool.stale_after)):
                return True
        await asyncio.sleep(0.2)
    return False


async def rolling_control(svc: RouterService, command: str | None, query: str, authorization: str) -> FanOut:
    """`/control?command=restart|exit` one worker at a time; the roll stops at the first worker that refuses or
    does not serve again in time, and the workers after it are left as they were."""
    token = _authorize(svc, authorization)
    if not command:
        raise BadCommand("command is required")
    if command not in CONTROL_COMMANDS:
        raise BadCommand(f"command: {command} is not supported (restart or exit)")
    if svc.control_lock.locked():
        raise ControlBusy("a rolling /control is already under way: retry when it is done")
    async with svc.control_lock:
        urls = _targets(svc)
        timeout = svc.settings.control_ready_timeout
        per_worker: dict[str, dict[str, Any]] = {}
        failure: tuple[int, dict[str, Any]] | None = None
        for url in urls:
            if failure is not None:
                per_worker[url] = {"status": None, "message": "not touched: the roll stopped before this worker"}
                continue
            since = time.monotonic()
            status, body = await _call(svc, url, "/control", query, token)
            if status == 200 and not await _serving_again(svc, url, since, timeout):
                status, body = 504, {"message": f"{command}: not serving again within {timeout:g} s; roll stopped"}
            per_worker[url] = {"status": status, **body}
            if status != 200:
                failure = (status, body)
            log_fields(log, "rolling control", command=command, worker=url, status=status,
                       seconds=round(time.monotonic() - since, 2))
        return FanOut(per_worker, failure)
