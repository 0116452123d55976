"""Streamed answers shared by worker and router: a disconnect watcher, and a response that can end visibly cut.

A stream that cannot finish (its deadline passed, the engine failed, the worker behind the router died) must not end
with a clean chunked terminator: the client would take a short answer for a whole one. A body iterator raises
`StreamAborted`; `ChunkStream` then returns without the final empty chunk, and uvicorn closes the connection, so
every HTTP client reports an incomplete body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Optional

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class ClientGone(Exception):
    """The client disconnected before its answer was complete."""


class StreamAborted(Exception):
    """Raised by a stream's body: end the answer without its terminating chunk, so the client sees it cut."""


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client disconnects (the request body, if any, has been read already)."""
    while True:
        if (await receive())["type"] == "http.disconnect":
            return


class ChunkStream(Response):
    """Sends each chunk of `body` as one HTTP chunk as soon as it is made, and calls `on_close` however it ends.

    Starlette's StreamingResponse watches for disconnects with a task group of its own on every request; our
    callers already watch (and stop the work behind the stream), so this class only sends."""

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]], status_code: int,
                 headers: Mapping[str, str], media_type: Optional[str] = None) -> None:
        # No Response.__init__: it would render an empty body and add `content-length: 0` to a streamed answer.
        self.status_code = status_code
        self.background = None
        self.media_type = media_type
        self.init_headers(headers)
        self._body = body
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self._body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except StreamAborted:
            pass  # no terminating chunk: uvicorn closes the connection and the client sees the cut
        finally:
            await self._on_close()
