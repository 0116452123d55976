"""Forward one /tts request: choose a worker, retry elsewhere before the first byte, stream bytes through."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Awaitable, Callable, Optional

import aiohttp
from fastapi import Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send
from yarl import URL

from tts_common.http_errors import error
from tts_common.logs import log_fields
from tts_common.request_id import request_id_of

from .pool import WorkerState
from .service import RouterService

log = logging.getLogger("tts_router.request")

# Upstream headers worth passing on; hop-by-hop ones and our own X-Request-ID are not.
PASS_HEADERS = ("content-type", "content-length", "x-sample-rate", "x-worker-id", "server-timing", "retry-after")
# What a failed hop to a worker raises: connection errors, a cut body, a read timeout.
UPSTREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


class _ClientGone(Exception):
    pass


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        if (await receive())["type"] == "http.disconnect":
            return


class _Passthrough(Response):
    """Sends a worker's body as it arrives and always settles the request when it ends, however it ends.

    Starlette's StreamingResponse watches for a client disconnect with a task group of its own on every request;
    the forwarder already has a watcher (`gone`), which closes the upstream response when the client leaves, so the
    read below ends at once and the worker stops synthesising."""

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]], status_code: int,
                 headers: dict[str, str]) -> None:
        # No Response.__init__: it would render an empty body and add `content-length: 0` to a streamed answer.
        self.status_code = status_code
        self.background = None
        self.init_headers(headers)  # only the worker's headers: its content-length when it gave one
        self._body = body
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self._body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self._on_close()


class Forwarder:
    def __init__(self, svc: RouterService, request: Request, chars: int, body: Optional[bytes]) -> None:
        self.svc = svc
        self.request = request
        self.chars = chars
        self.body = body
        self.rid = request_id_of(request.scope)
        self.t0 = time.monotonic()
        self.tried: list[str] = []

    def _log(self, status: int, worker: Optional[WorkerState], **extra: object) -> None:
        log_fields(
            log, "tts request", request_id=self.rid, method=self.request.method, status=status,
            worker=worker.name if worker else None, worker_url=worker.url if worker else None,
            attempts=len(self.tried), tried=self.tried,
            total_s=round(time.monotonic() - self.t0, 4), chars=self.chars, **extra,
        )

    def finish(self, status: int, worker: Optional[WorkerState], **extra: object) -> None:
        svc = self.svc
        if 200 <= status < 300:
            svc.counters.completed += 1
        elif status >= 500:  # a client that left (499) is the client's doing, like any 4xx
            svc.counters.failed += 1
        svc.metrics.requests.labels(status=str(status), worker=worker.name if worker else "none").inc()
        svc.metrics.latency.observe(time.monotonic() - self.t0)
        self._log(status, worker, **extra)

    async def _upstream(self, worker: WorkerState) -> aiohttp.ClientResponse:
        headers = {"x-request-id": self.rid}
        if self.body is not None:
            headers["content-type"] = self.request.headers.get("content-type", "application/json")
        query = self.request.url.query
        # The client's query string is passed on as it was encoded, not re-encoded.
        url = URL(f"{worker.url}/tts" + (f"?{query}" if query else ""), encoded=True)
        return await self.svc.forward_session.request(self.request.method, url, data=self.body, headers=headers)

    async def _send(self, worker: WorkerState, gone: "asyncio.Task[None]") -> aiohttp.ClientResponse:
        sender = asyncio.ensure_future(self._upstream(worker))
        done, _ = await asyncio.wait({sender, gone}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done:
            return sender.result()
        sender.cancel()  # closes the upstream connection: the worker drops the queued job
        try:
            await sender
        except (asyncio.CancelledError, Exception):
            pass
        raise _ClientGone()

    async def run(self) -> Response:
        svc = self.svc
        svc.retry_budget.deposit()
        gone: Optional[asyncio.Task[None]] = asyncio.ensure_future(_wait_disconnect(self.request.receive))
        last_refusal: Optional[aiohttp.ClientResponse] = None
        last_body = b""
        try:
            for attempt in range(svc.settings.max_retries + 1):
                if attempt > 0:
                    if not svc.retry_budget.withdraw():
                        break
                    svc.metrics.retries.inc()
                worker = await svc.choose(self.chars, set(self.tried))
                if worker is None:
                    break
                self.tried.append(worker.name)
                worker.routed += 1
                worker.in_flight += 1
                sent_at = time.monotonic()
                try:
                    upstream = await self._send(worker, gone)  # type: ignore[arg-type]
                except _ClientGone:
                    worker.in_flight -= 1
                    raise
                except UPSTREAM_ERRORS as exc:
                    # Nothing reached the client yet: count it against the worker and try another one.
                    worker.in_flight -= 1
                    worker.failed += 1
                    self._record_failure(worker, f"{type(exc).__name__}: {exc}")
                    continue
                svc.metrics.upstream.labels(worker=worker.name).observe(time.monotonic() - sent_at)
                if upstream.status == 503:
                    # Full or draining: its slot is not ours. Try elsewhere; keep its answer in case all refuse.
                    try:
                        last_body = await upstream.read()
                    except UPSTREAM_ERRORS:
                        last_body = b""
                    upstream.release()
                    worker.in_flight -= 1
                    last_refusal = upstream
                    continue
                response = self._stream(worker, upstream, gone)
                gone = None  # the stream owns the watcher now
                return response
        except _ClientGone:
            self.finish(499, None, note="client disconnected before a worker answered")
            return Response(status_code=499)
        finally:
            if gone is not None:
                gone.cancel()

        if last_refusal is not None:
            self.finish(503, None, note="every worker tried refused")
            headers = {"Retry-After": last_refusal.headers.get("retry-after", str(svc.retry_after()))}
            return Response(last_body, status_code=503, headers=headers,
                            media_type=last_refusal.headers.get("content-type"))
        if self.tried:
            self.finish(502, None, note="every worker tried failed")
            return error(502, f"no worker could answer: tried {', '.join(self.tried)}",
                         headers={"Retry-After": str(svc.retry_after())})
        self.finish(503, None, note="no worker with room")
        message = "every worker is full: retry later" if svc.pool.healthy() else "no healthy worker"
        return error(503, message, headers={"Retry-After": str(svc.retry_after())})

    def _record_failure(self, worker: WorkerState, reason: str) -> None:
        self.svc.pool.record_failure(worker, reason)

    def _stream(self, worker: WorkerState, upstream: aiohttp.ClientResponse, gone: "asyncio.Task[None]") -> Response:
        svc = self.svc
        headers = {k: v for k, v in upstream.headers.items() if k.lower() in PASS_HEADERS}
        headers["x-retries"] = str(len(self.tried) - 1)  # how many workers refused or failed before this one
        sent = 0
        broken: Optional[str] = None
        complete = False
        left = False

        def client_left(_: "asyncio.Future[None]") -> None:
            nonlocal left
            if not complete:
                left = True
                upstream.close()  # ends the read below; the worker sees the disconnect and stops synthesising

        gone.add_done_callback(client_left)

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent, broken, complete
            try:
                async for chunk in upstream.content.iter_any():
                    if sent == 0:
                        svc.metrics.first_byte.observe(time.monotonic() - self.t0)
                    sent += len(chunk)
                    yield chunk
                complete = not left
            except UPSTREAM_ERRORS as exc:
                if left:
                    return
                # Bytes already reached the client: never retried. Abort so the client sees the cut.
                broken = f"{type(exc).__name__}: {exc}"
                raise

        async def on_close() -> None:
            gone.remove_done_callback(client_left)
            gone.cancel()
            if complete:
                upstream.release()  # the connection goes back to the pool
            else:
                upstream.close()  # the worker sees the disconnect and stops synthesising
            worker.in_flight -= 1
            status = upstream.status
            if complete and status < 500:
                worker.completed += 1
                svc.pool.record_success(worker)
                self.finish(status, worker, bytes=sent)
            elif broken is None:  # the client left mid-stream; closing upstream stopped the worker's engine
                self.finish(499, worker, bytes=sent, note="client disconnected mid-stream")
            else:
                worker.failed += 1
                svc.metrics.truncated.inc()
                if broken:
                    self._record_failure(worker, broken)
                self.finish(502 if broken else status, worker, bytes=sent,
                             note=f"stream cut: {broken}" if broken else "")

        return _Passthrough(body(), on_close, status_code=upstream.status, headers=headers)
