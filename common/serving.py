"""uvicorn, with the limits a public server needs and a clean exit code.

- **Exit code.** After a graceful shutdown uvicorn re-raises the signal it caught, which turns a clean SIGTERM stop
  into exit code -15. Kubernetes and supervisors read that as a crash, so ours exit 0.
- **Connection limit.** uvicorn accepts every connection (20,000 idle sockets exhausted the router's file
  descriptors). At `max_connections` a new connection takes the place of the oldest one that has not sent a byte,
  else of the oldest one still sending its headers, else of the oldest one kept alive after an answer; and each
  peer address holds at most `max_connections_per_peer`, displacing its own past that (`tts_common.admission`):
  idle and half-sent sockets never keep out a client with a request to send. Only when every connection has a request in progress does a new one get a `503`
  JSON answer with `Retry-After` and is closed (after a short linger, so the answer is read); beyond twice the
  limit it is closed at once, unanswered, so a flood holds at most about 2 x `max_connections` descriptors.
- **Read timeouts.** A request's line and headers must arrive within `header_timeout` of its first byte, and its
  body within `read_timeout` (slow headers or bodies held connections for 40 s and more); past either the
  connection gets `408` and is closed.
- **Idle timeout.** A connection that sends nothing is closed after `keepalive_timeout`, from the moment it opens,
  not only after a first response as uvicorn does.
- **Sizes.** Request line plus headers are capped at `max_header_bytes` (`431`), bodies at `max_body_bytes` (`413`).

uvicorn has no hook for these, so they live in a subclass of its httptools protocol, the one parser we install.
"""

from __future__ import annotations

import json
import logging
import resource
from dataclasses import dataclass
from types import FrameType
from typing import Any, Optional

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .admission import Admission, State, Verdict
from .openai_speech import OpenAIError, error_kind

log = logging.getLogger("tts_common.serving")
# How long a refused connection stays half-open so its answer is read before the socket closes.
REFUSAL_LINGER_SECONDS = 0.5


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1024
    max_connections_per_peer: int = 512
    header_timeout: float = 5.0
    read_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 1024 * 1024


def raw_answer(status: int, reason: str, message: str, retry_after: Optional[int] = None,
               openai: bool = False) -> bytes:
    """A complete HTTP/1.1 answer with a JSON `message` (OpenAI's error envelope for a `/v1/` path), written
    straight to a socket, closing it."""
    if openai:
        body = json.dumps(OpenAIError(status, message, kind=error_kind(status)).body()).encode()
    else:
        body = json.dumps({"message": message}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close"]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedConfig(uvicorn.Config):
    """uvicorn's Config plus our `Limits`, always on the httptools protocol below."""

    def __init__(self, app: Any, limits: Limits, **kwargs: Any) -> None:
        kwargs.setdefault("timeout_keep_alive", max(1, round(limits.keepalive_timeout)))
        super().__init__(app, http=GuardedProtocol, **kwargs)
        self.limits = limits
        self.admission: Admission[GuardedProtocol] = Admission(limits.max_connections,
                                                               limits.max_connections_per_peer, FRESH_GRACE_SECONDS)
        self.last_refusal_log = -10.0  # loop time of the last "connection limit reached" line


# A connection that has sent nothing for this long is displaced first; a younger one only after half-sent ones (its
# client may have sent its request already, not yet read on a loaded server), and still before kept-alive ones.
FRESH_GRACE_SECONDS = 1.0


class GuardedProtocol(HttpToolsProtocol):
    """One connection: refused beyond the connection limit; timed while a request is being read; size-capped."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: Limits = getattr(config, "limits", Limits())
        admission = getattr(config, "admission", None)
        self.admission: Admission[GuardedProtocol] = admission if isinstance(admission, Admission) else \
            Admission(self.limits.max_connections, self.limits.max_connections_per_peer, FRESH_GRACE_SECONDS)
        self._read_timer: Optional[Any] = None
        self._read_started = 0.0  # loop time of the request's first byte
        self._header_bytes = 0
        self._body_bytes = 0
        self._refused = False
        self._openai = False  # the request being read is OpenAI's API: its refusals use OpenAI's envelope

    # -- connection ------------------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # noqa: D102 - uvicorn's interface
        super().connection_made(transport)
        if len(self.connections) > 2 * self.limits.max_connections:
            # Twice the limit open (refused ones still lingering): no answer, no linger, the descriptor is freed
            # at once.
            self._log_refusal()
            transport.abort()
            return
        verdict, displaced = self.admission.admit(self, self.client[0] if self.client else "")
        for other, state in displaced:
            other._displace(state)
        if verdict is Verdict.REFUSE:
            self._log_refusal()
            self._refuse(503, "Service Unavailable", f"too many connections (limit {self._limit_hit()}), each "
                         "with a request in progress: retry later", retry_after=1)
            return
        # uvicorn arms its idle timer only after a first response; a socket that never speaks is closed too.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.limits.keepalive_timeout, self.timeout_keep_alive_handler
        )

    def _limit_hit(self) -> str:
        peer = self.client[0] if self.client else ""
        if self.admission.peer_count(peer) >= self.limits.max_connections_per_peer:
            return f"{self.limits.max_connections_per_peer} per client address"
        return str(self.limits.max_connections)

    def _displace(self, state: State) -> None:
        """Make room for a new connection (`tts_common.admission` chose this one): a fresh or idle connection is
        closed as its keep-alive timeout would close it; one still sending its headers is answered 503."""
        if self.transport.is_closing() or self._refused:
            return
        if state is not State.READING:
            self._unset_keepalive_if_required()
            self.transport.close()
            return
        self._refuse(503, "Service Unavailable", f"too many connections (limit {self.limits.max_connections}): "
                     "this one had not sent its request's headers yet; retry later", retry_after=1)

    def connection_lost(self, exc: Optional[Exception]) -> None:  # noqa: D102
        self.admission.forget(self)
        self._stop_read_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:  # noqa: D102
        super().on_response_complete()
        # uvicorn armed its keep-alive timer: nothing is in progress until the next request begins.
        if self.timeout_keep_alive_task is not None and not self.transport.is_closing():
            self.admission.set_state(self, State.IDLE)

    def _log_refusal(self) -> None:
        # One line a second at most: a flood of connections must not become a flood of log lines.
        now = self.loop.time()
        config = self.config
        if isinstance(config, GuardedConfig) and now - config.last_refusal_log >= 1.0:
            config.last_refusal_log = now
            log.warning("connection limit reached: refusing new connections (limit %d)", self.limits.max_connections)

    def _refuse(self, status: int, reason: str, message: str, retry_after: Optional[int] = None) -> None:
        """Answer and close. Closing at once would reset the connection if the client is still sending (a body,
        or the request we refuse before reading it), and a reset can destroy the answer before the client reads
        it; so the answer is followed by a FIN, what still arrives is discarded, and the socket closes shortly."""
        self._stop_read_timer()
        self._unset_keepalive_if_required()
        self.admission.forget(self)  # on its way out: it no longer takes a place
        if self.transport.is_closing() or self._refused:
            return
        self._refused = True
        self.transport.write(raw_answer(status, reason, message, retry_after, self._openai))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(REFUSAL_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if not self._refused:
            super().data_received(data)

    # -- one request being read ------------------------------------------------------------------------------
    def on_message_begin(self) -> None:  # noqa: D102
        super().on_message_begin()
        self._header_bytes = 0
        self._body_bytes = 0
        self._openai = False
        self._stop_read_timer()
        self.admission.set_state(self, State.READING)
        self._read_started = self.loop.time()
        self._read_timer = self.loop.call_later(min(self.limits.header_timeout, self.limits.read_timeout),
                                                self._read_timed_out)

    def on_url(self, url: bytes) -> None:  # noqa: D102
        super().on_url(url)
        self._openai = self._openai or url.startswith(b"/v1/")
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:  # noqa: D102
        super().on_header(name, value)
        self._count_header(len(name) + len(value) + 4)

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes:
            self._refuse(431, "Request Header Fields Too Large",
                         f"request line and headers: over the limit of {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:  # noqa: D102
        if self.transport.is_closing() or self._refused:
            return
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.limits.max_body_bytes:
                self._refuse(413, "Content Too Large", self._body_message())
                return
        # A whole request: it holds its place until answered. Its body has what is left of `read_timeout`.
        self.admission.set_state(self, State.BUSY)
        self._stop_read_timer()
        left = self.limits.read_timeout - (self.loop.time() - self._read_started)
        self._read_timer = self.loop.call_later(max(0.0, left), self._read_timed_out)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:  # noqa: D102
        if self.transport.is_closing() or self._refused:  # the parser still runs over the rest of the buffer
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            if self.cycle is not None and not self.cycle.response_started:
                self._refuse(413, "Content Too Large", self._body_message())
            else:
                self.transport.close()
            return
        super().on_body(body)

    def _body_message(self) -> str:
        return f"body: over the limit of {self.limits.max_body_bytes} bytes"

    def on_message_complete(self) -> None:  # noqa: D102
        self._stop_read_timer()
        if not self.transport.is_closing() and not self._refused:
            super().on_message_complete()

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing() or self._refused:
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        if self.admission.state(self) is State.READING:
            what, limit = "the request's line and headers", min(self.limits.header_timeout, self.limits.read_timeout)
        else:
            what, limit = "the request", self.limits.read_timeout
        self._refuse(408, "Request Timeout", f"{what} did not arrive within {limit:g} s: closing the connection")

    def _stop_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards the hard one, so `max_connections` can be reached; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft)


def check_fd_budget(limits: Limits, reserve: int) -> None:
    """Warn when the file-descriptor limit cannot hold `max_connections` plus `reserve` other descriptors."""
    soft = raise_fd_limit(limits.max_connections + reserve)
    if soft != resource.RLIM_INFINITY and soft < limits.max_connections + reserve:
        log.warning("open-files limit %d is below max_connections %d + %d: lower max_connections or raise it",
                    soft, limits.max_connections, reserve)


class Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
