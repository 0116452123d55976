"""ASGI middleware that guards `/tts` and `/v1/*` with API keys, and counts each key's requests.

With a keys file: a request without a valid `Authorization: Bearer <key>` gets 401, one over its key's quota 429 with
`Retry-After`, in the error shape of the API it called (OpenAI's envelope on `/v1`, api_v2's `message` on `/tts`).
The key's id goes into the request's scope state (`api_key_id`) for the request's log line. Without one, requests
pass as before; a server behind the router may take the key id the router sends (`X-TTSC-Key-Id`) for its counters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Optional

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api_keys import KeysFile, valid_key_id
from .key_quota import KeyQuota
from .logs import log_fields
from .openai_speech import OpenAIError, error_kind
from .request_id import request_id_of

log = logging.getLogger("tts_common.keys")

KEY_ID_HEADER = "x-ttsc-key-id"
NO_KEY = "none"  # the key label of requests refused for want of a valid key
REFRESH_SECONDS = 1.0


class LabelBudget:
    """Bounds a metric label's distinct values (key ids a worker is sent are not its to vouch for): past `limit`,
    a new value is counted as `other`."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return "other"
        self._seen.add(value)
        return value


async def watch_keys(keys: KeysFile, quota: Optional[KeyQuota], interval: float = REFRESH_SECONDS) -> None:
    """Take a changed keys file (a rotated Secret) within `interval` seconds; a bad change is logged once and the
    last good keys stay in force. Runs for the server's life."""
    reported: Optional[str] = None
    while True:
        await asyncio.sleep(interval)
        if keys.refresh():
            if quota is not None:
                quota.forget_except(keys.value.ids())
            log_fields(log, "API keys reloaded", keys=len(keys.value.keys), file=str(keys.path))
        if keys.error != reported:
            reported = keys.error
            if keys.error is not None:
                log_fields(log, "API keys file refused: the last good keys stay in force", logging.ERROR,
                           error=keys.error)


def guarded(path: str) -> bool:
    return path == "/tts" or path.startswith("/v1/")


def key_id_of(scope: Scope) -> Optional[str]:
    value = scope.get("state", {}).get("api_key_id")
    return value if isinstance(value, str) else None


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def refusal(path: str, status: int, message: str, code: str, headers: dict[str, str]) -> JSONResponse:
    if path.startswith("/v1/"):
        body = OpenAIError(status, message, code=code, kind=error_kind(status)).body()
    else:
        body = {"message": message, "field": "Authorization"}
    return JSONResponse(body, status_code=status, headers=headers)


class KeyGuard:
    def __init__(self, app: ASGIApp, keys: Optional[KeysFile], quota: Optional[KeyQuota],
                 count: Callable[[str, int], None], trust_forwarded_id: bool = False) -> None:
        self.app = app
        self.keys = keys
        self.quota = quota  # None: keys are checked, their limits are another server's (the router's) to keep
        self.count = count
        self.trust_forwarded_id = trust_forwarded_id
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if self.keys is None:
            forwarded = _header(scope, KEY_ID_HEADER.encode()) if self.trust_forwarded_id else ""
            if not valid_key_id(forwarded):
                await self.app(scope, receive, send)
                return
            state["api_key_id"] = forwarded
            await self._counted(forwarded, scope, receive, send)
            return
        path = scope["path"]
        authorization = _header(scope, b"authorization")
        key = self.keys.value.match(authorization)
        if key is None:
            message = ("API key not valid" if authorization
                       else "API key missing: send Authorization: Bearer <key>")
            self._refuse(scope, 401, NO_KEY, message)
            await refusal(path, 401, message, "invalid_api_key",
                          {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        state["api_key_id"] = key.id
        if self.quota is None:
            await self._counted(key.id, scope, receive, send)
            return
        over = self.quota.acquire(key)
        if over is not None:
            self._refuse(scope, 429, key.id, over.message)
            await refusal(path, 429, over.message, "rate_limit_exceeded",
                          {"Retry-After": str(over.retry_after)})(scope, receive, send)
            return
        try:
            await self._counted(key.id, scope, receive, send)
        finally:
            self.quota.release(key)

    def _refuse(self, scope: Scope, status: int, key_id: str, message: str) -> None:
        self.count(key_id, status)
        log_fields(log, "request refused", request_id=request_id_of(scope), method=scope.get("method"),
                   path=scope["path"], status=status, key=key_id, note=message)

    async def _counted(self, key_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500  # what the client gets if the app ends without starting an answer

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.count(key_id, status)
