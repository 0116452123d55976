"""`GET /tts` and `POST /tts`: validate, admit into the bounded queue, answer a whole body or a stream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Optional

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tts_common.http_errors import error
from tts_common.logs import log_fields
from tts_common.request_id import request_id_of
from tts_common.schemas import TTSRequest
from tts_common.streaming import ChunkStream, ClientGone, StreamAborted, wait_disconnect
from tts_common.validation import InvalidRequest, as_api_v2_get

from .encoders import CONTENT_TYPES, encode, encode_chunk, encoded_rate, wav_header
from .engines.base import AudioTooLong, Cancelled, EngineError, StreamMode, VoiceUnavailable
from .scheduler import DeadlinePassed, Draining, Job, JobOutcome, QueueFull
from .service import WorkerService, service_of
from .validation import UnknownVoice, check_request

log = logging.getLogger("tts_worker.request")
router = APIRouter()

AUDIO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {t: {} for t in CONTENT_TYPES.values()}, "description": "Audio in the asked media_type."},
    400: {"description": "Invalid request (`message` names the field) or `tts failed`."},
    404: {"description": "`voice` is not in the voice catalog; `message` names the voices it has."},
    503: {"description": "Queue full or draining; see Retry-After."},
    504: {"description": "Request timed out."},
}


class _Outcome:
    """What the one log line per request reports."""

    def __init__(self, svc: WorkerService, request: Request, chars: int, media_type: str, mode: int) -> None:
        self.svc = svc
        self.rid = request_id_of(request.scope)
        self.method = request.method
        self.t0 = time.monotonic()
        self.chars = chars
        self.media_type = media_type
        self.mode = mode
        self.logged = False

    def log(self, status: int, job: Optional[Job] = None, note: str = "", nbytes: int = 0) -> None:
        if self.logged:
            return
        self.logged = True
        self.svc.metrics.requests.labels(status=str(status)).inc()
        fields: dict[str, Any] = dict(
            request_id=self.rid,
            worker=self.svc.settings.name,
            method=self.method,
            status=status,
            chars=self.chars,
            media_type=self.media_type,
            streaming_mode=self.mode,
            total_s=round(time.monotonic() - self.t0, 4),
        )
        if job is not None:
            fields.update(
                queue_wait_s=round(job.queue_wait, 4),
                processing_s=round(job.processing, 4),
                audio_s=round(job.samples / max(1, job.rate or self.svc.engine.sample_rate), 3),
                outcome=job.outcome.value,
                bytes=nbytes,
            )
        if note:
            fields["note"] = note
        log_fields(log, "tts request", **fields)


async def _encode(pcm: np.ndarray, rate: int, media_type: str, whole: bool) -> bytes:
    if media_type in ("wav", "raw"):  # a copy of bytes: not worth a thread hop
        return encode(pcm, rate, media_type) if whole else encode_chunk(pcm, rate, media_type)
    return await asyncio.to_thread(encode if whole else encode_chunk, pcm, rate, media_type)


async def handle_tts(request: Request, req: TTSRequest) -> Response:
    """Validate, admit, then answer a whole body or a stream; every failure is a typed error mapped here."""
    svc = service_of(request.app.state)
    settings = svc.settings
    outcome = _Outcome(svc, request, len(req.text or ""), req.media_type, 0)
    job: Optional[Job] = None
    gone = asyncio.ensure_future(wait_disconnect(request.receive))
    try:
        params = check_request(req, svc.engine, settings.voice_dir, settings.max_text_length,
                               settings.max_audio_seconds, svc.catalog())
        outcome.mode = int(params.mode)
        if params.skipped_aux:
            log_fields(log, "aux reference clips skipped (empty or not found)", logging.WARNING,
                       request_id=outcome.rid, skipped=list(params.skipped_aux))
        job = svc.scheduler.submit(params, outcome.rid, outcome.t0 + settings.request_timeout)
        chunks = svc.scheduler.chunks(job, gone)
        first = await anext(chunks)
        if params.mode == StreamMode.OFF:
            pcm = np.concatenate([first] + [chunk async for chunk in chunks])
            gone.cancel()
            return await _whole(svc, job, pcm, outcome)
    except BaseException as exc:
        gone.cancel()
        if isinstance(exc, Exception):
            answer = _refusal(svc, job, exc, outcome)
            if answer is not None:
                return answer
        raise
    # Streaming: the first chunk exists, so from here on an error can only cut the stream (visibly).
    return _stream(svc, job, first, chunks, gone, outcome)


def _draining() -> Response:
    return error(503, "worker is draining: retry on another worker", headers={"Retry-After": "1"})


def _refusal(svc: WorkerService, job: Optional[Job], exc: Exception, outcome: "_Outcome") -> Optional[Response]:
    """The answer for a request that ended before any byte was sent; None for an error that is not ours."""
    settings = svc.settings
    if isinstance(exc, InvalidRequest):
        status = 404 if isinstance(exc, UnknownVoice) else 400
        outcome.log(status, note=exc.message)
        return error(status, exc.message, exc.field)
    if isinstance(exc, QueueFull):
        outcome.log(503, note="queue full")
        return error(503, f"queue is full ({settings.max_queue_size} admitted): retry later",
                     headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, Draining):
        outcome.log(503, job, note=str(exc))
        return _draining()
    if isinstance(exc, DeadlinePassed):
        outcome.log(504, job)
        return error(504, f"request timed out after {settings.request_timeout:g} s (queue wait + synthesis)")
    if isinstance(exc, (ClientGone, Cancelled)):
        outcome.log(499, job, note="client disconnected")
        return Response(status_code=499)
    if isinstance(exc, AudioTooLong):
        outcome.log(400, job, note=str(exc))
        return error(400, str(exc), "text")
    if isinstance(exc, VoiceUnavailable):  # this worker's problem, not the request's: another worker may serve it
        outcome.log(503, job, note=str(exc))
        return error(503, str(exc), "voice", headers={"Retry-After": str(svc.scheduler.retry_after())})
    if isinstance(exc, (EngineError, StopAsyncIteration)):  # the scheduler ends no job without audio; still
        detail = str(exc) or "the text produced no audio"
        outcome.log(400, job, note=detail)
        return error(400, "tts failed", exception=detail)
    return None


async def _whole(svc: WorkerService, job: Job, pcm: np.ndarray, outcome: "_Outcome") -> Response:
    req, rate = job.params.request, job.rate or svc.engine.output_rate(job.params)
    body = await _encode(pcm, rate, req.media_type, whole=True)
    outcome.log(200, job, nbytes=len(body))
    # Lets callers (router, benchmarks) split latency into queueing, engine and transport.
    timing = f"queue;dur={job.queue_wait * 1000:.1f}, engine;dur={job.processing * 1000:.1f}"
    headers = {**_audio_headers(svc, job, rate), "Server-Timing": timing}
    return Response(body, media_type=CONTENT_TYPES[req.media_type], headers=headers)


def _audio_headers(svc: WorkerService, job: Job, rate: int) -> dict[str, str]:
    headers = {"X-Sample-Rate": str(encoded_rate(job.params.request.media_type, rate)),
               "X-Worker-ID": svc.settings.name}
    if job.params.skipped_aux:  # skipped as api_v2 skips them, but never silently
        headers["X-Aux-Refs-Skipped"] = str(len(job.params.skipped_aux))
    return headers


def _stream(svc: WorkerService, job: Job, first: np.ndarray, chunks: AsyncGenerator[np.ndarray, None],
            gone: "asyncio.Task[None]", outcome: "_Outcome") -> Response:
    req, rate = job.params.request, job.rate or svc.engine.output_rate(job.params)
    sent = 0
    cut = ""

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent, cut
        if req.media_type == "wav":
            yield wav_header(rate, 0)
        pcm = first
        while True:
            data = await _encode(pcm, rate, req.media_type, whole=False)
            sent += len(data)
            yield data
            try:
                pcm = await anext(chunks)
            except StopAsyncIteration:
                return
            except ClientGone:
                return
            except (DeadlinePassed, Draining, Cancelled, EngineError) as exc:
                if isinstance(exc, DeadlinePassed):
                    cut = f"deadline of {svc.settings.request_timeout:g} s passed mid-stream"
                else:
                    cut = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                raise StreamAborted(cut) from None

    async def on_close() -> None:
        gone.cancel()
        await chunks.aclose()  # a reader that stops early (the client left) cancels the job
        if cut:
            log_fields(log, "stream aborted", logging.WARNING, request_id=outcome.rid, reason=cut, bytes=sent)
        note = f"stream aborted: {cut}" if cut else ("" if job.outcome is JobOutcome.OK else "client left mid-stream")
        outcome.log(200, job, nbytes=sent, note=note)

    return ChunkStream(body(), on_close, status_code=200, headers=_audio_headers(svc, job, rate),
                       media_type=CONTENT_TYPES[req.media_type])


@router.get("/tts", responses=AUDIO_RESPONSES, summary="Synthesize speech (query parameters)")
async def tts_get(request: Request, params: Annotated[TTSRequest, Query()]) -> Response:
    return await handle_tts(request, as_api_v2_get(params))


@router.post("/tts", responses=AUDIO_RESPONSES, summary="Synthesize speech (JSON body)")
async def tts_post(request: Request, params: TTSRequest) -> Response:
    return await handle_tts(request, params)
