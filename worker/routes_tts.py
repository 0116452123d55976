"""`GET /tts` and `POST /tts`: validate, admit into the bounded queue, answer a whole body or a stream."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tts_common.http_errors import error
from tts_common.key_guard import key_id_of
from tts_common.logs import log_fields
from tts_common.request_id import request_id_of
from tts_common.schemas import HELD_ELSEWHERE_HEADER, TTSRequest
from tts_common.streaming import ChunkStream, ClientGone, StreamAborted, wait_disconnect
from tts_common.validation import InvalidRequest, as_api_v2_get

from .encoders import (
    CONTENT_TYPES,
    PYAV_FORMATS,
    Resampler,
    StreamEncoder,
    encode,
    encode_chunk,
    encoded_rate,
    wav_header,
)
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


# status, message, field, exception detail, headers -> the answer to a request refused before any byte
Refuse = Callable[[int, str, Optional[str], Optional[str], Optional[dict[str, str]]], Response]


def api_v2_refusal(status: int, message: str, field_name: Optional[str] = None, exception: Optional[str] = None,
                   headers: Optional[dict[str, str]] = None) -> Response:
    return error(status, message, field_name, exception, headers)


@dataclass(frozen=True)
class Answer:
    """How one API shapes a synthesis's answer: api_v2's, unless told otherwise (OpenAI's speech API)."""

    refuse: Refuse = api_v2_refusal
    #: resample to this rate before encoding (OpenAI's pcm is 24 kHz whatever the engine's)
    rate: Optional[int] = None
    content_type: Optional[str] = None
    #: server-sent events: each encoded chunk as a base64 `speech.audio.delta`, then `speech.audio.done`
    sse: bool = False
    #: a streamed body is one file whose bytes go out as they are made (OpenAI's), not a file per chunk (api_v2's)
    continuous: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


class _Outcome:
    """What the one log line per request reports."""

    def __init__(self, svc: WorkerService, request: Request, chars: int, media_type: str, mode: int) -> None:
        self.svc = svc
        self.rid = request_id_of(request.scope)
        self.key_id = key_id_of(request.scope)
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
            key=self.key_id,
        )
        if job is not None:
            audio_s = job.samples / max(1, job.rate or self.svc.engine.sample_rate)
            if self.key_id is not None:
                self.svc.metrics.key_audio_seconds.labels(key=self.svc.key_label(self.key_id)).inc(audio_s)
            fields.update(
                queue_wait_s=round(job.queue_wait, 4),
                processing_s=round(job.processing, 4),
                audio_s=round(audio_s, 3),
                outcome=job.outcome.value,
                bytes=nbytes,
            )
            if self.svc.scheduler.max_batch > 1:  # the most requests it shared the engine with, itself included
                fields["batch_peak"] = job.batch_peak
        if note:
            fields["note"] = note
        log_fields(log, "tts request", **fields)


async def _encode(pcm: np.ndarray, rate: int, media_type: str, whole: bool) -> bytes:
    if media_type in ("wav", "raw"):  # a copy of bytes: not worth a thread hop
        return encode(pcm, rate, media_type) if whole else encode_chunk(pcm, rate, media_type)
    return await asyncio.to_thread(encode if whole else encode_chunk, pcm, rate, media_type)


async def handle_tts(request: Request, req: TTSRequest, answer: Answer = Answer()) -> Response:
    """Validate, admit, then answer a whole body or a stream; every failure is a typed error mapped here (in the
    shape `answer` gives)."""
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
        job = svc.scheduler.submit(params, outcome.rid, outcome.t0 + settings.request_timeout,
                                   held_elsewhere=request.headers.get(HELD_ELSEWHERE_HEADER) == "1")
        chunks = svc.scheduler.chunks(job, gone)
        first = await anext(chunks)
        if params.mode == StreamMode.OFF:
            pcm = np.concatenate([first] + [chunk async for chunk in chunks])
            gone.cancel()
            return await _whole(svc, job, pcm, outcome, answer)
    except BaseException as exc:
        gone.cancel()
        if isinstance(exc, Exception):
            refused = _refusal(svc, job, exc, outcome, answer.refuse)
            if refused is not None:
                return refused
        raise
    # Streaming: the first chunk exists, so from here on an error can only cut the stream (visibly).
    return _stream(svc, job, first, chunks, gone, outcome, answer)


def _refusal(svc: WorkerService, job: Optional[Job], exc: Exception, outcome: "_Outcome",
             refuse: Refuse) -> Optional[Response]:
    """The answer for a request that ended before any byte was sent; None for an error that is not ours."""
    settings = svc.settings
    if isinstance(exc, InvalidRequest):
        status = 404 if isinstance(exc, UnknownVoice) else 400
        outcome.log(status, note=exc.message)
        return refuse(status, exc.message, exc.field, None, None)
    if isinstance(exc, QueueFull):
        outcome.log(503, note="queue full")
        return refuse(503, f"queue is full ({settings.max_queue_size} admitted): retry later", None, None,
                      {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, Draining):
        outcome.log(503, job, note=str(exc))
        return refuse(503, "worker is draining: retry on another worker", None, None, {"Retry-After": "1"})
    if isinstance(exc, DeadlinePassed):
        outcome.log(504, job)
        return refuse(504, f"request timed out after {settings.request_timeout:g} s (queue wait + synthesis)", None,
                      None, None)
    if isinstance(exc, (ClientGone, Cancelled)):
        outcome.log(499, job, note="client disconnected")
        return Response(status_code=499)
    if isinstance(exc, AudioTooLong):
        outcome.log(400, job, note=str(exc))
        return refuse(400, str(exc), "text", None, None)
    if isinstance(exc, VoiceUnavailable):  # this worker's problem, not the request's: another worker may serve it
        outcome.log(503, job, note=str(exc))
        return refuse(503, str(exc), "voice", None, {"Retry-After": str(svc.scheduler.retry_after())})
    if isinstance(exc, (EngineError, StopAsyncIteration)):  # the scheduler ends no job without audio; still
        detail = str(exc) or "the text produced no audio"
        outcome.log(400, job, note=detail)
        return refuse(400, "tts failed", None, detail, None)
    return None


async def _whole(svc: WorkerService, job: Job, pcm: np.ndarray, outcome: "_Outcome", answer: Answer) -> Response:
    req, rate = job.params.request, job.rate or svc.engine.output_rate(job.params)
    if answer.rate is not None:
        resampler = Resampler(rate, answer.rate)
        pcm, rate = np.concatenate([resampler.feed(pcm), resampler.flush()]), answer.rate
    body = await _encode(pcm, rate, req.media_type, whole=True)
    outcome.log(200, job, nbytes=len(body))
    # Lets callers (router, benchmarks) split latency into queueing, engine and transport.
    timing = f"queue;dur={job.queue_wait * 1000:.1f}, engine;dur={job.processing * 1000:.1f}"
    headers = {**_audio_headers(svc, job, rate), "Server-Timing": timing, **answer.extra_headers}
    return Response(body, media_type=answer.content_type or CONTENT_TYPES[req.media_type], headers=headers)


def _audio_headers(svc: WorkerService, job: Job, rate: int) -> dict[str, str]:
    headers = {"X-Sample-Rate": str(encoded_rate(job.params.request.media_type, rate)),
               "X-Worker-ID": svc.settings.name}
    if job.params.skipped_aux:  # skipped as api_v2 skips them, but never silently
        headers["X-Aux-Refs-Skipped"] = str(len(job.params.skipped_aux))
    return headers


# The largest data size a RIFF header holds (RIFF size = 36 + this): what streamed WAV writers use for "unknown".
UNKNOWN_WAV_DATA_BYTES = 0xFFFFFFFF - 36


class _StreamBytes:
    """A stream's PCM chunks as the bytes the client gets: api_v2's (a wav header then PCM, or a file per chunk),
    or, as `answer` asks, resampled, encoded continuously (one file whose bytes go out as they are made) and framed
    as server-sent events."""

    def __init__(self, media_type: str, rate: int, answer: Answer, text: str) -> None:
        self.media_type, self.answer, self.text = media_type, answer, text
        self.resampler = Resampler(rate, answer.rate) if answer.rate is not None else None
        self.rate = answer.rate or rate
        continuous = answer.continuous and media_type in PYAV_FORMATS
        self.encoder = StreamEncoder(media_type, self.rate) if continuous else None

    def _framed(self, data: bytes) -> bytes:
        if not data or not self.answer.sse:
            return data
        return _sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})

    def start(self) -> bytes:
        if self.media_type != "wav":
            return b""
        # api_v2 sends data size 0; one continuous file says "unknown, read to the end" with the largest size.
        size = UNKNOWN_WAV_DATA_BYTES if self.answer.continuous else 0
        return self._framed(wav_header(self.rate, size))

    async def feed(self, pcm: np.ndarray) -> bytes:
        return await self._encoded(self.resampler.feed(pcm) if self.resampler is not None else pcm)

    async def _encoded(self, pcm: np.ndarray) -> bytes:
        if not len(pcm):
            return b""
        if self.encoder is not None:
            return self._framed(await asyncio.to_thread(self.encoder.feed, pcm))
        return self._framed(await _encode(pcm, self.rate, self.media_type, whole=False))

    async def end(self) -> bytes:
        """What the resampler and the encoder still hold, then (SSE) the end event."""
        data = await self._encoded(self.resampler.flush()) if self.resampler is not None else b""
        if self.encoder is not None:
            data += self._framed(await asyncio.to_thread(self.encoder.close))
        if self.answer.sse:
            chars = len(self.text)
            data += _sse({"type": "speech.audio.done",
                          "usage": {"input_tokens": chars, "output_tokens": 0, "total_tokens": chars}})
        return data


def _stream(svc: WorkerService, job: Job, first: np.ndarray, chunks: AsyncGenerator[np.ndarray, None],
            gone: "asyncio.Task[None]", outcome: "_Outcome", answer: Answer) -> Response:
    req = job.params.request
    out = _StreamBytes(req.media_type, job.rate or svc.engine.output_rate(job.params), answer, req.text or "")
    sent = 0
    cut = ""

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent, cut
        if header := out.start():  # api_v2 clients read the wav header as a chunk of its own
            yield header
        pcm = first
        while True:
            if data := await out.feed(pcm):  # an empty chunk would end a chunked body early
                sent += len(data)
                yield data
            try:
                pcm = await anext(chunks)
            except StopAsyncIteration:
                if tail := await out.end():
                    sent += len(tail)
                    yield tail
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

    media_type = "text/event-stream" if answer.sse else (answer.content_type or CONTENT_TYPES[req.media_type])
    headers = {**_audio_headers(svc, job, out.rate), **answer.extra_headers}
    return ChunkStream(body(), on_close, status_code=200, headers=headers, media_type=media_type)


@router.get("/tts", responses=AUDIO_RESPONSES, summary="Synthesize speech (query parameters)")
async def tts_get(request: Request, params: Annotated[TTSRequest, Query()]) -> Response:
    return await handle_tts(request, as_api_v2_get(params))


@router.post("/tts", responses=AUDIO_RESPONSES, summary="Synthesize speech (JSON body)")
async def tts_post(request: Request, params: TTSRequest) -> Response:
    return await handle_tts(request, params)
