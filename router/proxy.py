"""Forward one /tts request: lease a worker, retry elsewhere before the first byte, stream bytes through.

What is retried on another worker, while nothing has reached the client: a refused connection, a broken one, a
timeout, a 503 (full or draining), a 500 or 502, and any refusal from a worker on probation or in doubt (its last
answers were all errors while its peers succeed). Failures spend the retry budget; a 503 does not: it is the
worker saying it cannot take the request (full, draining) or gives it back before any byte (a drain out of time),
not that it is sick, so a retry cannot feed a failure; a retry goes only to a worker with room (at most
`max_retries` of them), and the refusing worker is held out of the choice for a while (`pool.REFUSAL_HOLD_SECONDS`),
which bounds how many refusals there can be. A drain that ran out of time answers every request it held 503 at
once: spending the budget on them passed some to clients while a peer had room (issue 30). A request whose
connection broke after it was sent is retried once; when it has broken two workers (now, or within the poison
memory's window) it is answered 502 naming them and refused at once from then on. A stream that breaks after bytes
went out is never retried: the client's answer is cut, visibly (no clean end).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Optional

import aiohttp
from fastapi import Request
from fastapi.responses import Response
from yarl import URL

from tts_common.http_errors import error
from tts_common.key_guard import KEY_ID_HEADER, key_id_of
from tts_common.logs import log_fields
from tts_common.request_id import request_id_of
from tts_common.schemas import HELD_ELSEWHERE_HEADER
from tts_common.streaming import ChunkStream, ClientGone, StreamAborted, wait_disconnect

from .pool import Lease, WorkerState
from .service import RouterService

log = logging.getLogger("tts_router.request")

# Upstream headers worth passing on; hop-by-hop ones and our own X-Request-ID are not.
PASS_HEADERS = ("content-type", "content-length", "x-sample-rate", "x-worker-id", "server-timing", "retry-after",
                "x-aux-refs-skipped")
# What a failed hop to a worker raises: connection errors, a cut body, a read timeout.
UPSTREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)
# Complete answers that say the worker failed, not the request: another worker may well succeed.
RETRIED_STATUSES = (500, 502)
# The most of a refusal's body kept to pass on if every worker refuses (they are short JSON messages).
REFUSAL_BODY_LIMIT = 64 * 1024


def broke_after_send(exc: BaseException) -> bool:
    """The worker accepted the connection and it broke under the request (the worker died, or reset it): unlike
    a refused connection or a timeout, the request itself may be what broke it."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False
    return isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError))


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# A worker's chunk is one segment's audio, and a long segment at 48 kHz is tens of MB: past this the router passes
# it on in pieces (its framing lost for that one chunk) rather than hold it all per stream.
MAX_HELD_CHUNK = 4 << 20


async def http_chunks(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The worker's answer as the worker framed it: each HTTP chunk it sent, whole, as soon as it is complete.

    api_v2 clients rely on that framing (the first chunk of a streamed wav is the 44-byte header; every raw chunk is
    whole int16 samples; each ogg/aac chunk decodes on its own), so chunks are neither merged nor split here. An
    answer with a Content-Length has no chunks to keep: it is passed on as it arrives."""
    if upstream.headers.get("transfer-encoding", "").lower() != "chunked":
        async for data in upstream.content.iter_any():
            yield data
        return
    pending = bytearray()  # one chunk of the worker's, at most MAX_HELD_CHUNK bytes
    async for data, end_of_chunk in upstream.content.iter_chunks():
        pending += data
        if (end_of_chunk or len(pending) >= MAX_HELD_CHUNK) and pending:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


def stop_reading(upstream: aiohttp.ClientResponse) -> None:
    """End a read in progress on `upstream` with an exception made for it, then close its connection.

    `ClientResponse.close()` alone ends a pending read by raising one module-level `ClientConnectionError` that
    aiohttp shares between all responses, and every raise of the same instance links the raising frames onto its
    `__traceback__`: each stream a client abandoned stayed reachable from that one exception for good, with its
    last chunk, its response and its request (about 200 KB each, issue 30). A fresh exception set first is the one
    the reader raises, and close() leaves a stream that already has one alone."""
    if upstream.content.exception() is None:
        upstream.content.set_exception(ClientGone("the client left"))
    upstream.close()


def forget_traceback(exc: BaseException) -> None:
    """Drop the traceback of an upstream error once caught. aiohttp raises some instances more than once (the
    shared one above, if anything else closes a response under a reader): with its traceback cleared, the next
    raise starts a new one instead of keeping this request's frames alive."""
    exc.__traceback__ = None


@dataclass
class _Held:
    """A complete error answer from a worker, kept in case no other worker does better."""

    status: int
    body: bytes
    content_type: Optional[str]
    retry_after: Optional[int]


# status, message, headers -> the router's own error answer, in the shape of the API asked (api_v2's by default)
RouterRefuse = Callable[[int, str, Optional[dict[str, str]]], Response]


def api_v2_error(status: int, message: str, headers: Optional[dict[str, str]] = None) -> Response:
    return error(status, message, headers=headers)


class Forwarder:
    def __init__(self, svc: RouterService, request: Request, chars: int, body: Optional[bytes], fp: str,
                 voice: Optional[str] = None, path: str = "/tts", refuse: RouterRefuse = api_v2_error) -> None:
        self.svc = svc
        self.voice = voice
        self.path = path
        self.refuse = refuse
        self.request = request
        self.chars = chars
        self.body = body
        self.fp = fp
        self.rid = request_id_of(request.scope)
        self.key_id = key_id_of(request.scope)
        self.t0 = time.monotonic()
        self.tried: list[WorkerState] = []

    def finish(self, status: int, worker: Optional[WorkerState], **extra: Any) -> None:
        svc = self.svc
        svc.counters.record(status)
        svc.metrics.requests.labels(status=str(status), worker=worker.name if worker else "none").inc()
        svc.metrics.latency.observe(time.monotonic() - self.t0)
        log_fields(
            log, "tts request", request_id=self.rid, method=self.request.method, status=status,
            worker=worker.name if worker else None, worker_url=worker.url if worker else None,
            attempts=len(self.tried), tried=[w.name for w in self.tried],
            total_s=round(time.monotonic() - self.t0, 4), chars=self.chars, fingerprint=self.fp, key=self.key_id,
            **extra,
        )

    async def _upstream(self, lease: Lease) -> aiohttp.ClientResponse:
        worker = lease.worker
        headers = {"x-request-id": self.rid}
        if lease.held_elsewhere:  # counted by the worker should the request wait for its voice's load there
            headers[HELD_ELSEWHERE_HEADER] = "1"
        if self.key_id is not None:
            # The key goes on as a proxy passes it (a worker with the same keys file checks it too, so its own
            # port is guarded); its id is what a worker without keys counts the request's audio seconds by.
            headers[KEY_ID_HEADER] = self.key_id
            headers["authorization"] = self.request.headers.get("authorization", "")
        if self.body is not None:
            headers["content-type"] = self.request.headers.get("content-type", "application/json")
        query = self.request.url.query
        # The client's query string is passed on as it was encoded, not re-encoded.
        url = URL(f"{worker.url}{self.path}" + (f"?{query}" if query else ""), encoded=True)
        return await self.svc.forward_session.request(self.request.method, url, data=self.body, headers=headers)

    async def _send(self, lease: Lease, gone: "asyncio.Task[None]") -> aiohttp.ClientResponse:
        sender = asyncio.ensure_future(self._upstream(lease))
        done, _ = await asyncio.wait({sender, gone}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done:
            return sender.result()
        sender.cancel()  # closes the upstream connection: the worker drops the queued job
        try:
            await sender
        except (asyncio.CancelledError, Exception):
            pass
        raise ClientGone()

    def _condemned(self, workers: list[str]) -> Response:
        minutes = self.svc.poison.ttl / 60
        message = (f"this request broke the connection of {len(workers)} workers ({', '.join(workers)}) within "
                   f"{minutes:g} minutes: refused without trying another (fingerprint {self.fp})")
        self.finish(502, None, note="request condemned: it broke workers")
        return self.refuse(502, message, None)

    async def run(self) -> Response:
        svc = self.svc
        condemned = svc.poison.condemned(self.fp)
        if condemned is not None:
            return self._condemned(condemned)
        svc.retry_budget.deposit()
        gone: Optional[asyncio.Task[None]] = asyncio.ensure_future(wait_disconnect(self.request.receive))
        held: Optional[_Held] = None
        refused = False  # the last worker tried answered 503: it did not admit the request
        try:
            for attempt in range(svc.settings.max_retries + 1):
                if attempt > 0:
                    # A 503 is retried outside the budget (see the module docstring); a failure spends a token.
                    if not refused and not svc.retry_budget.withdraw():
                        break
                    svc.metrics.retries.inc()
                lease = await svc.pool.reserve(self.chars, {w.url for w in self.tried}, svc.policy,
                                               svc.settings.capacity_wait, self.voice)
                if lease is None:
                    break
                worker = lease.worker
                self.tried.append(worker)
                sent_at = time.monotonic()
                try:
                    assert gone is not None
                    upstream = await self._send(lease, gone)
                except ClientGone:
                    lease.abandoned()
                    raise
                except UPSTREAM_ERRORS as exc:
                    # Nothing reached the client yet: count it against the worker and try another one.
                    refused = False
                    lease.failed(describe(exc))
                    if broke_after_send(exc):
                        broken = svc.poison.record_break(self.fp, worker.name)
                        if len(broken) >= svc.poison.condemn_after:
                            return self._condemned(broken)
                    continue
                svc.metrics.upstream.labels(worker=worker.name).observe(time.monotonic() - sent_at)
                status = upstream.status
                doubted = status >= 400 and (lease.probe or svc.pool.doubtful(worker))
                if status == 503 or status in RETRIED_STATUSES or doubted:
                    refused = status == 503
                    held = await self._hold(upstream, lease, held)
                    continue
                response = self._stream(lease, upstream, gone)
                gone = None  # the stream owns the watcher now
                return response
        except ClientGone:
            self.finish(499, None, note="client disconnected before a worker answered")
            return Response(status_code=499)
        finally:
            if gone is not None:
                gone.cancel()
        return self._no_answer(held)

    async def _hold(self, upstream: aiohttp.ClientResponse, lease: Lease, held: Optional[_Held]) -> _Held:
        """Read a worker's error answer, settle its lease, and keep the answer to pass on if no one does better."""
        status = upstream.status
        try:
            body = await upstream.content.read(REFUSAL_BODY_LIMIT)
        except UPSTREAM_ERRORS:
            body = b""
        upstream.release()
        given = upstream.headers.get("retry-after", "")
        retry_after = int(given) if given.isdigit() else None
        note = "" if status >= 500 else f"answered {status} on probation or in doubt"
        lease.answered(status, note, retry_after)
        if held is not None and held.retry_after is not None and status == held.status == 503:
            # The soonest of the workers' own estimates: one policy, passed on (tts_common.retry_after).
            retry_after = min(held.retry_after, retry_after) if retry_after is not None else held.retry_after
        return _Held(status, body, upstream.headers.get("content-type"), retry_after)

    def _no_answer(self, held: Optional[_Held]) -> Response:
        svc = self.svc
        if held is not None:
            self.finish(held.status, None, note=f"every worker tried answered an error: {held.status}")
            headers = {}
            if held.status == 503:
                headers["Retry-After"] = str(held.retry_after or svc.pool.retry_after())
            return Response(held.body, status_code=held.status, headers=headers, media_type=held.content_type)
        if self.tried:
            self.finish(502, None, note="every worker tried failed")
            names = ", ".join(w.name for w in self.tried)
            return self.refuse(502, f"no worker could answer: tried {names}",
                               {"Retry-After": str(svc.pool.retry_after())})
        self.finish(503, None, note="no worker with room")
        message = "every worker is full: retry later" if svc.pool.healthy() else "no healthy worker"
        return self.refuse(503, message, {"Retry-After": str(svc.pool.retry_after())})

    def _stream(self, lease: Lease, upstream: aiohttp.ClientResponse, gone: "asyncio.Task[None]") -> Response:
        svc, worker = self.svc, lease.worker
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
                # Ends the read below (the worker sees the disconnect and stops synthesising), with an error of
                # this stream's own: see `stop_reading`.
                stop_reading(upstream)

        gone.add_done_callback(client_left)

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent, broken, complete
            try:
                async for chunk in http_chunks(upstream):
                    if sent == 0:
                        svc.metrics.first_byte.observe(time.monotonic() - self.t0)
                    sent += len(chunk)
                    yield chunk
                complete = not left
            except ClientGone as exc:
                forget_traceback(exc)  # it and this frame would hold each other (a cycle: freed late, by the gc)
                return  # the client left: `stop_reading` ended the read
            except UPSTREAM_ERRORS as exc:
                forget_traceback(exc)
                if left:
                    return
                # Bytes may already have reached the client: never retried. Cut the answer so the client sees it.
                broken = describe(exc)
                if broke_after_send(exc):
                    svc.poison.record_break(self.fp, worker.name)
                raise StreamAborted(broken) from exc

        async def on_close() -> None:
            gone.remove_done_callback(client_left)
            gone.cancel()
            if complete:
                upstream.release()  # the connection goes back to the pool
            else:
                upstream.close()  # the worker sees the disconnect and stops synthesising
            self._settle(lease, upstream.status, complete, broken, sent)

        return ChunkStream(body(), on_close, status_code=upstream.status, headers=headers)

    def _settle(self, lease: Lease, status: int, complete: bool, broken: Optional[str], sent: int) -> None:
        worker = lease.worker
        if broken is not None:
            lease.failed(broken)
            self.svc.metrics.truncated.inc()
            self.finish(502, worker, bytes=sent, note=f"stream cut: {broken}")
        elif not complete:  # the client left mid-stream; closing upstream stopped the worker's engine
            lease.abandoned()
            self.finish(499, worker, bytes=sent, note="client disconnected mid-stream")
        else:  # a complete answer (a 504, the worker's deadline, is a sign of load: see outcome.answer_outcome)
            lease.answered(status)
            self.finish(status, worker, bytes=sent)
