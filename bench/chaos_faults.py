"""A worker that fails fast, for the chaos suite: `python -m tts_bench.chaos_faults --port P --mode MODE`.

It looks like the best worker a router could pick (ready, empty queue, capacity 10, a tiny seconds-per-character
in a valid `/stats`, `/readyz` and `/healthz` 200), and misbehaves on every `/tts` in one way:

- `500`: answers 500 at once; `400`: answers api_v2's 400 `tts failed` at once;
- `503`: refuses at once with 503 and `Retry-After: 1`, as a full or draining worker does, while its `/stats` still
  says it is idle (as a poll taken a moment before would);
- `reset`: reads the request, then resets the connection (RST) without a byte of answer;
- `cut`: answers 200 with audio headers, sends a few bytes of the body, then drops the connection (with a
  Content-Length for a whole body, chunked for a stream), so the body is cut mid-way.

A failing worker that is also the fastest-looking one is how a broken GPU behaves: it attracts traffic. It is a
separate process on its own port, so the router talks to it over real HTTP as it does to a real worker.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tts_common.schemas import LANGUAGES_V2, WorkerStats

MODES = ("500", "400", "503", "reset", "cut")
SAMPLE_RATE = 32000


def _zero(annotation: Any) -> Any:
    text = str(annotation)
    for name, value in (("bool", False), ("int", 0), ("float", 0.0), ("list", []), ("dict", {}), ("str", "")):
        if name in text:
            return value
    return None


def stats_body(worker_id: str, started: float) -> dict[str, Any]:
    """A valid WorkerStats: what a ready, idle, fast worker reports. Fields added to the schema later are filled
    with zeros, so the fake keeps validating while the schema grows."""
    known: dict[str, Any] = {
        "worker_id": worker_id, "engine": "synthetic", "engine_version": "synthetic", "device": "cpu",
        "sample_rate": SAMPLE_RATE, "languages": list(LANGUAGES_V2), "prompt_languages": list(LANGUAGES_V2),
        "max_text_length": 1000, "ready": True, "draining": False, "queue_depth": 0, "in_flight": 0,
        "capacity": 10, "queued_work_seconds": 0.0, "seconds_per_char": 0.00001, "processed": 0, "failed": 0,
        "rejected": 0, "cancelled": 0, "average_processing_time": 0.01, "average_queue_wait": 0.0,
        "audio_seconds": 0.0, "uptime_seconds": time.monotonic() - started, "pid": os.getpid(),
    }
    for name, info in WorkerStats.model_fields.items():
        if name not in known and info.is_required():
            known[name] = _zero(info.annotation)
    return dict(WorkerStats.model_validate(known).model_dump(mode="json"))


async def _params(request: web.Request) -> dict[str, Any]:
    if request.method == "POST":
        try:
            body = json.loads(await request.read() or b"{}")
            return body if isinstance(body, dict) else {}
        except ValueError:
            return {}
    return dict(request.query)


def _reset(request: web.Request) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN: "connection reset by peer".
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()


def _worker_headers(worker_id: str) -> dict[str, str]:
    return {"X-Worker-ID": worker_id, "X-Sample-Rate": str(SAMPLE_RATE)}


async def _cut(request: web.Request, params: dict[str, Any], worker_id: str) -> web.StreamResponse:
    streaming = str(params.get("streaming_mode", "0")).lower() not in ("0", "false", "")
    response = web.StreamResponse(status=200, headers={**_worker_headers(worker_id), "Content-Type": "audio/raw"})
    if streaming:
        response.enable_chunked_encoding()
    else:
        response.content_length = 64000  # promised, never delivered
    await response.prepare(request)
    await response.write(b"\x00\x01" * 800)
    if request.transport is not None:
        request.transport.abort()  # mid-body: no final chunk, fewer bytes than promised
    return response


def make_app(mode: str, worker_id: str) -> web.Application:
    started = time.monotonic()
    hits = {"tts_requests": 0}  # how much traffic the router sent here: `GET /_chaos`

    async def tts(request: web.Request) -> web.StreamResponse:
        hits["tts_requests"] += 1
        params = await _params(request)
        headers = {"X-Worker-ID": worker_id}
        if mode == "500":
            return web.json_response({"message": "internal error: injected fault"}, status=500, headers=headers)
        if mode == "400":
            return web.json_response({"message": "tts failed", "Exception": "injected fault"}, status=400,
                                     headers=headers)
        if mode == "503":
            return web.json_response({"message": "queue is full: retry later (injected fault)"}, status=503,
                                     headers={**headers, "Retry-After": "1"})
        if mode == "reset":
            _reset(request)
            return web.Response(status=200)  # never reaches the client: the connection is gone
        return await _cut(request, params, worker_id)

    def plain(body: Callable[[], dict[str, Any]]) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.Response:
            return web.json_response(body())

        return handler

    app = web.Application()
    app.router.add_get("/healthz", plain(lambda: {"status": "ok"}))
    app.router.add_get("/readyz", plain(lambda: {"status": "ready"}))
    app.router.add_get("/stats", plain(lambda: stats_body(worker_id, started)))
    app.router.add_get("/_chaos", plain(lambda: dict(hits)))
    app.router.add_route("GET", "/tts", tts)
    app.router.add_route("POST", "/tts", tts)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-a", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, required=True)
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--worker-id", default="")
    args = p.parse_args()
    worker_id = args.worker_id or f"fault-{args.mode}-{args.port}"
    web.run_app(make_app(args.mode, worker_id), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
