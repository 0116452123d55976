"""The chaos suite's load client: every request's outcome, classified as succeeded, failed visibly or lost.

A request *succeeded* when it got a 2xx with the whole audio; it *failed visibly* when the client was told: a
4xx/5xx answer, a refused or reset connection, or a body cut so that the HTTP library raised (a client can retry
those). It is *lost* when the client was not told: no answer within the bound after the connection was accepted,
or a 2xx whose audio is short (or long) without any error. Loss is the one outcome a client cannot defend against,
so the suite fails on any.

"Short" is checked exactly: the synthetic engine's audio length is a function of the text (see `expected_bytes`),
so with `media_type=raw` and `fragment_interval=0` the byte count of a whole body or of every streaming mode is
known before the request is sent. ogg and aac answers are decoded and their sample count compared.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import aiohttp

Verdict = Literal["ok", "failed", "lost"]
SAMPLE_RATE = 32000  # the synthetic engine's default; X-Sample-Rate overrides it when present
AAC_SLACK = 4096  # AAC pads with encoder priming and a last partial frame: at most a few 1024-sample frames


def expected_bytes(text: str, sample_rate: int) -> int:
    """Bytes of raw int16 audio the synthetic engine makes for `text` with fragment_interval=0, in every mode."""
    # Imported here: `tts-cluster router` builds the bench parser too, and the router never imports engine code.
    from tts_worker.engines.synthetic import SECONDS_OF_AUDIO_PER_CHAR, split_segments

    return 2 * sum(int(SECONDS_OF_AUDIO_PER_CHAR * len(seg) * sample_rate) for seg in split_segments(text))


@dataclass(frozen=True)
class Job:
    """One request to send: raw audio by POST unless told otherwise."""

    text: str
    mode: int = 0  # streaming_mode
    media: str = "raw"
    method: str = "POST"

    def params(self) -> dict[str, Any]:
        return {"text": self.text, "text_lang": "en", "prompt_lang": "en", "ref_audio_path": "reference.wav",
                "media_type": self.media, "fragment_interval": 0, "streaming_mode": self.mode}


@dataclass
class Outcome:
    index: int
    mode: int
    media: str
    sent_at: float  # seconds on the scenario's clock
    done_at: float = 0.0
    verdict: Verdict = "lost"
    status: int = 0  # 0: no HTTP answer
    detail: str = ""
    first_entry: str = ""  # the entry (router) the request was first sent to
    entry: str = ""  # the entry that gave the final answer
    worker: Optional[str] = None  # X-Worker-ID
    attempts: int = 0  # more than 1: the client failed over to another entry
    retries: int = 0  # X-Retries: workers that refused or failed before the one that answered (the router's)
    fresh: bool = False  # sent on a new connection of its own (a client arriving now), not a pooled one
    nbytes: int = 0
    expected: Optional[int] = None


class Clock:
    """Seconds since the scenario started, shared by the client, the fault actions and the report."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0


class _Attempt:
    """What one HTTP attempt learned; `retryable` when nothing came back, so another entry may be tried."""

    def __init__(self) -> None:
        self.status = 0
        self.nbytes = 0
        self.body = b""
        self.rate = SAMPLE_RATE
        self.worker: Optional[str] = None
        self.retries = 0
        self.error = ""
        self.timed_out = False

    @property
    def retryable(self) -> bool:
        return self.status == 0 and not self.timed_out


class ChaosClient:
    """Sends jobs to `entries` in turn (two routers: each request to the next), records every outcome.

    With `failover`, a request whose attempt got nothing back (refused, or the connection dropped before the
    headers) is sent to the next entry, as a client with two endpoints would do; a request cut mid-body is not
    retried (bytes of it were already played)."""

    def __init__(self, entries: list[str], clock: Clock, bound: float, failover: bool = False,
                 connect_timeout: float = 3.0, on_done: Optional[Callable[[], None]] = None) -> None:
        self.entries = entries
        self.on_done = on_done
        self.clock = clock
        self.bound = bound
        self.failover = failover
        self.connect_timeout = connect_timeout
        self.outcomes: list[Outcome] = []
        self._turn = itertools.count()
        self._session: Optional[aiohttp.ClientSession] = None

    async def __aenter__(self) -> "ChaosClient":
        # Idle pooled connections are closed by us within 1 s, before any server's keep-alive timeout could
        # close them under a request we are sending (a race that would look like a fault of the server).
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=1.0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
            auto_decompress=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, job: Job, first: Optional[int] = None, fresh: bool = False) -> Outcome:
        """Send one job (to entry `first`, else to the next in turn) and classify what came back. `fresh`: on a
        new connection of its own, as a client arriving now would, not on one of the pool's."""
        turn = next(self._turn)
        first = turn % len(self.entries) if first is None else first
        out = Outcome(len(self.outcomes), job.mode, job.media, self.clock.now(), first_entry=self.entries[first],
                      fresh=fresh)
        self.outcomes.append(out)
        deadline = time.monotonic() + self.bound
        tries = len(self.entries) if self.failover else 1
        attempt = _Attempt()
        for k in range(tries):
            out.entry = self.entries[(first + k) % len(self.entries)]
            out.attempts = k + 1
            attempt = await self._attempt(out.entry, job, deadline - time.monotonic(), fresh)
            if not attempt.retryable:
                break
        _classify(out, job, attempt)
        out.done_at = self.clock.now()
        if self.on_done is not None:
            self.on_done()
        return out

    async def _attempt(self, entry: str, job: Job, remaining: float, fresh: bool = False) -> _Attempt:
        if not fresh:
            assert self._session is not None
            return await self._attempt_on(self._session, entry, job, remaining)
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout), auto_decompress=False,
        ) as session:
            return await self._attempt_on(session, entry, job, remaining)

    async def _attempt_on(self, session: aiohttp.ClientSession, entry: str, job: Job, remaining: float) -> _Attempt:
        a = _Attempt()
        params = {k: str(v) for k, v in job.params().items()}
        kwargs: dict[str, Any] = {"params": params} if job.method == "GET" else {"json": job.params()}
        keep_body = job.media not in ("raw", "wav")  # decoded afterwards; raw is only counted
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(max(0.01, remaining)):
                async with session.request(job.method, f"{entry}/tts", **kwargs) as r:
                    a.status = r.status
                    a.worker = r.headers.get("x-worker-id")
                    retries = r.headers.get("x-retries", "")
                    a.retries = int(retries) if retries.isdigit() else 0
                    a.rate = int(r.headers.get("x-sample-rate") or SAMPLE_RATE)
                    async for chunk in r.content.iter_any():
                        a.nbytes += len(chunk)
                        if keep_body:
                            chunks.append(chunk)
        except aiohttp.ClientError as exc:  # refused, reset, cut mid-body: the client library told us
            a.error = f"{type(exc).__name__}: {exc}"[:200]
        except TimeoutError:  # our own bound, not aiohttp's (aiohttp's connect timeout is a ClientError)
            a.timed_out = True
            a.error = f"no answer within {self.bound:g} s"
        a.body = b"".join(chunks)
        return a


def _classify(out: Outcome, job: Job, a: _Attempt) -> None:
    out.status, out.nbytes, out.worker, out.retries = a.status, a.nbytes, a.worker, a.retries
    if a.timed_out:
        out.verdict, out.detail = "lost", a.error + (f" (status {a.status}, {a.nbytes} bytes)" if a.status else "")
    elif a.error:
        out.verdict, out.detail = "failed", _short_error(a.error) + (f" after {a.status}" if a.status else "")
    elif not 200 <= a.status < 300:
        out.verdict, out.detail = "failed", f"HTTP {a.status}"
    else:
        _check_audio(out, job, a)


def _check_audio(out: Outcome, job: Job, a: _Attempt) -> None:
    want = expected_bytes(job.text, a.rate)
    out.expected = want
    if job.media == "raw":
        got = a.nbytes
    elif job.media == "wav":
        got = a.nbytes - 44  # one RIFF header, whole or streamed
    else:
        samples = decoded_samples(a.body, job.media)
        if samples < 0:
            out.verdict, out.detail = "lost", f"2xx whose body does not decode as {job.media}, no error"
            return
        got = 2 * samples
    exact = job.media != "aac"
    if got == want or (not exact and want <= got <= want + 2 * AAC_SLACK):
        out.verdict, out.detail = "ok", ""
    else:
        out.verdict = "lost"
        out.detail = f"2xx {'short' if got < want else 'long'}: {got} of {want} bytes of audio, no error"


def _short_error(error: str) -> str:
    # "ClientConnectorError: Cannot connect to host 127.0.0.1:4242 ssl:default [Connect call failed ...]" ->
    # a name and a hint, so equal failures group in the report.
    name, _, rest = error.partition(": ")
    if "Connect call failed" in rest or "Connection refused" in rest:
        return f"{name}: connection refused"
    if "reset by peer" in rest:
        return f"{name}: connection reset"
    if "TransferEncodingError" in rest:
        return f"{name}: stream cut (no final chunk)"
    if "ContentLengthError" in rest:
        return f"{name}: body cut (short of Content-Length)"
    return f"{name}: {rest[:80]}" if rest else name


def decoded_samples(body: bytes, media: str) -> int:
    """Samples in an ogg or aac body; -1 when it does not decode (a 2xx that cannot be played is lost too)."""
    try:
        if media == "ogg":
            import soundfile as sf

            return int(sf.info(io.BytesIO(body)).frames)
        if media == "aac":
            import av

            samples = 0
            with av.open(io.BytesIO(body), mode="r", format="aac") as container:
                for frame in container.decode(audio=0):
                    samples += int(frame.samples)
            return samples
    except Exception:  # noqa: BLE001 - any decoder error means the body is not playable audio
        return -1
    return -1


# ---- load shapes ---------------------------------------------------------------------------------------------


@dataclass
class Steady:
    """Open-loop load: `rate` requests per second for at least `seconds`, longer while fault actions run (up to
    `max_seconds`), then `tail` seconds more, so every fault is followed by load that shows the recovery."""

    rate: float
    seconds: float
    jobs: list[Job]
    tail: float = 1.5
    max_seconds: float = 60.0
    seed: int = 7


async def run_steady(client: ChaosClient, load: Steady, busy: "threading.Event") -> None:
    """Send load.jobs in a cycle at Poisson arrivals until the time is up; `busy` is set while faults run."""
    rng = random.Random(load.seed)
    start = time.monotonic()
    next_at = start
    tail_from: Optional[float] = None
    pending: list[asyncio.Task[Outcome]] = []
    for job in itertools.cycle(load.jobs):
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= load.max_seconds:
            break
        if elapsed >= load.seconds and not busy.is_set():
            tail_from = tail_from or now
            if now - tail_from >= load.tail:
                break
        else:
            tail_from = None
        next_at += rng.expovariate(load.rate)
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        pending.append(asyncio.create_task(client.send(job)))
    await asyncio.gather(*pending)


async def burst(client: ChaosClient, jobs: list[Job], count: int) -> None:
    """`count` requests at once."""
    await asyncio.gather(*(client.send(jobs[i % len(jobs)]) for i in range(count)))


# ---- connection floods ---------------------------------------------------------------------------------------


class IdleSockets:
    """Plain TCP connections that never send a byte, held open until `close`. Opened from a thread."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.socks: list[socket.socket] = []
        self.failed = 0

    def open(self, count: int, deadline_s: float = 20.0) -> None:
        end = time.monotonic() + deadline_s
        for _ in range(count):
            if time.monotonic() > end:
                break
            s = socket.socket()
            s.settimeout(2.0)
            try:
                s.connect((self.host, self.port))
            except OSError:
                self.failed += 1
                s.close()
                continue
            self.socks.append(s)

    def states(self) -> dict[str, int]:
        """How the server treats the connections now: still open, answered (it sent bytes: a 503 or 408), or
        closed without a word."""
        out = {"open": 0, "answered": 0, "closed": 0}
        for s in self.socks:
            try:
                s.setblocking(False)
                out["answered" if s.recv(1, socket.MSG_PEEK) else "closed"] += 1
            except BlockingIOError:
                out["open"] += 1
            except OSError:  # reset
                out["closed"] += 1
        return out

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks.clear()


@dataclass
class Trickle:
    """Connections that send a request's header one byte per `interval` and never finish it (slowloris)."""

    host: str
    port: int
    clock: Clock
    interval: float = 1.0
    opened: int = 0
    refused: int = 0
    closed_at: list[float] = field(default_factory=list)  # clock time each was closed (or answered) by the server

    async def run(self, count: int, until: float) -> None:
        await asyncio.gather(*(self._one(until) for _ in range(count)))

    async def _one(self, until: float) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 3.0)
        except (OSError, TimeoutError):
            self.refused += 1
            return
        self.opened += 1
        header = b"GET /tts?text=" + b"a" * 4096
        try:
            for byte in itertools.cycle(header):
                if self.clock.now() >= until:
                    return
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    await asyncio.wait_for(reader.read(1024), self.interval)
                    self.closed_at.append(self.clock.now())  # data (a 408, say) or EOF: the server let go
                    return
                except TimeoutError:
                    continue
        except OSError:
            self.closed_at.append(self.clock.now())
        finally:
            writer.close()
