"""api_v2's admin calls through the router: sent to every worker that is not ejected, with the router's token."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from tts_common.auth import admin_refusal
from tts_common.logs import log_fields

from .service import RouterService

log = logging.getLogger("tts_router.admin")


class AdminForbidden(Exception):
    """No router token configured, or the caller did not send it: 403."""


class NoWorker(Exception):
    """Nothing to send the call to: 503."""


@dataclass
class FanOut:
    """Each worker's answer by URL, and the first refusal (status, body) if any worker refused."""

    per_worker: dict[str, dict[str, Any]]
    first_failure: tuple[int, dict[str, Any]] | None


async def fan_out(svc: RouterService, path: str, query: str, authorization: str) -> FanOut:
    refusal = admin_refusal(svc.settings.admin_token, authorization,
                            "configure an admin token (TTSC_ROUTER_ADMIN_TOKEN)")
    if refusal:
        raise AdminForbidden(refusal)
    token = svc.settings.admin_token.get_secret_value() if svc.settings.admin_token else ""
    workers = [w for w in svc.pool.ordered() if not w.ejected]
    if not workers:
        raise NoWorker("no worker to send it to")

    async def one(url: str) -> tuple[str, int, dict[str, Any]]:
        target = URL(f"{url}{path}" + (f"?{query}" if query else ""), encoded=True)
        try:
            async with svc.control_session.get(target, headers={"authorization": f"Bearer {token}"}) as r:
                text = await r.text()
                try:
                    body = await r.json(content_type=None)
                except ValueError:
                    body = {"message": text[:200]}
                return url, r.status, body if isinstance(body, dict) else {"message": str(body)[:200]}
        except (TimeoutError, aiohttp.ClientError) as exc:
            return url, 502, {"message": f"{type(exc).__name__}: {exc}"}

    results = await asyncio.gather(*(one(w.url) for w in workers))
    per_worker = {url: {"status": status, **body} for url, status, body in results}
    failed = [(status, body) for _, status, body in results if status != 200]
    log_fields(log, "admin fan-out", path=path, workers=len(results), failed=len(failed))
    return FanOut(per_worker, failed[0] if failed else None)
