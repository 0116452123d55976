"""Each defect of the reliability review, reproduced against real worker and router processes over HTTP.

Broken workers are real processes too: `tts_bench.chaos_faults` serves a valid /stats and misbehaves on /tts
(500s, 400s, connection resets, cut bodies), as a broken GPU or a crashing codec would.
"""

from __future__ import annotations

import asyncio
import io
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import av
import httpx
import pytest
import soundfile as sf

from support.params import tts_params
from support.wait import eventually
from tts_bench.chaos_memory import abandon_streams, wait_idle
from tts_cli.processes import ServiceProcess, free_port
from tts_worker.engines.synthetic import SECONDS_OF_AUDIO_PER_CHAR

pytestmark = pytest.mark.process

RATE = 32000


@pytest.fixture
def spawn_fault(logs_dir: Path) -> Iterator[Callable[[str], ServiceProcess]]:
    """A worker that fails every /tts in one way (`mode`: 500, 400, reset, cut), ready when /readyz answers."""
    started: list[ServiceProcess] = []

    def spawn(mode: str) -> ServiceProcess:
        port = free_port()
        log_path = logs_dir / f"fault-{mode}-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "tts_bench.chaos_faults", "--port", str(port),
                                     "--mode", mode], stdout=log, stderr=subprocess.STDOUT)
        fault = ServiceProcess(proc, port, log_path)
        started.append(fault)
        eventually(lambda: _ok(f"{fault.url}/readyz"))
        return fault

    yield spawn
    for fault in started:
        fault.stop()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def worker_entry(router: ServiceProcess, url: str) -> dict:
    stats = httpx.get(f"{router.url}/concurrent_stats").json()
    return next(w for w in stats["workers"] if w["url"] == url)


FAST = ("--synthetic-base-seconds", "0", "--synthetic-seconds-per-char", "0")


# -- 1. the request of death -----------------------------------------------------------------------------------


def _decoded_samples(body: bytes, media_type: str) -> int:
    if media_type == "ogg":
        pcm, rate = sf.read(io.BytesIO(body), dtype="int16")
        assert rate == RATE
        return len(pcm)
    with av.open(io.BytesIO(body)) as container:
        return sum(frame.samples for frame in container.decode(audio=0))


@pytest.mark.parametrize("media_type", ["ogg", "aac"])
def test_a_whole_body_three_times_the_old_crash_size_encodes_and_the_worker_lives(spawn_worker, media_type):
    # libsndfile crashed at about 2.1 M samples in one write; 3000 characters are 6.7 M samples here.
    worker = spawn_worker(*FAST, "--max-text-length", "3000")
    text = "a" * 3000
    r = httpx.get(f"{worker.url}/tts", params=tts_params(text=text, media_type=media_type), timeout=120)
    assert r.status_code == 200, r.text
    expected = int(SECONDS_OF_AUDIO_PER_CHAR * len(text) * RATE)
    assert expected > 3 * 2_100_000
    decoded = _decoded_samples(r.content, media_type)
    assert expected <= decoded < expected + 4096  # aac pads its last frame
    assert worker.proc.poll() is None


def test_the_old_request_of_death_through_the_router_leaves_every_worker_alive(spawn_worker, spawn_router):
    workers = [spawn_worker(*FAST) for _ in range(3)]
    router = spawn_router(*workers)
    for media_type in ("ogg", "aac"):
        for _ in range(2):
            r = httpx.get(f"{router.url}/tts", params=tts_params(text="a" * 1000, media_type=media_type),
                          timeout=120)
            assert r.status_code == 200, r.text
            assert r.headers["x-retries"] == "0"
    assert all(w.proc.poll() is None for w in workers)


# -- 2 and 3. retries, broken workers, ejection ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["500", "reset"])
def test_a_worker_that_fails_every_request_is_skipped_on_retry_and_ejected(spawn_worker, spawn_router, spawn_fault,
                                                                          mode):
    good = spawn_worker("--worker-id", "good")
    bad = spawn_fault(mode)
    router = spawn_router(good, bad)
    for i in range(12):
        r = httpx.post(f"{router.url}/tts", json=tts_params(text=f"Request number {i}."), timeout=30)
        assert r.status_code == 200 and r.headers["x-worker-id"] == "good", (r.status_code, r.text)
    entry = worker_entry(router, bad.url)
    assert entry["ejected"] and entry["routed"] <= 4  # three consecutive failures, then ejected
    stats = httpx.get(f"{router.url}/concurrent_stats").json()
    assert stats["failed_requests"] == 0 and stats["completed_requests"] == 12
    assert '"worker ejected"' in router.log_text() and "consecutive gateway failures" in router.log_text()


def test_a_worker_answering_503_never_passes_its_503_to_a_client_while_a_peer_has_room(spawn_worker, spawn_router,
                                                                                    spawn_fault):
    """Issue 30: it looks idle and fastest in /stats, so every request went there first and spent a retry; once the
    retry budget (10 + 0.2 a request) was gone, its 503s reached clients: 7 of 20 did."""
    healthy = spawn_worker("--worker-id", "healthy")
    router = spawn_router(spawn_fault("503"), healthy)
    started = time.monotonic()
    answers = [httpx.post(f"{router.url}/tts", json=tts_params(), timeout=30) for _ in range(60)]
    elapsed = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * 60
    assert {a.headers["x-worker-id"] for a in answers} == {"healthy"}
    retried = sum(int(a.headers["x-retries"]) for a in answers)
    # Held out after each refusal for 0.5 s, then its Retry-After (1 s): one request in a row (they are sequential)
    # can try it per hold, so at most one retry for each second of the run, plus the first; without the hold, every
    # request would try it first (60). The bound follows the run's length: a slower machine makes more holds end.
    assert 1 <= retried <= 2 + elapsed, (retried, elapsed)


def test_a_complete_5xx_answer_passed_on_is_counted_failed_not_as_a_client_leaving(spawn_router, spawn_fault):
    only = spawn_fault("500")
    router = spawn_router(only)
    r = httpx.post(f"{router.url}/tts", json=tts_params(), timeout=30)
    assert r.status_code == 500 and "injected fault" in r.json()["message"]
    stats = httpx.get(f"{router.url}/concurrent_stats").json()
    assert stats["failed_requests"] == 1 and stats["success_rate"] == 0
    line = next(line for line in router.log_text().splitlines() if '"tts request"' in line)
    assert '"status": 500' in line and "client disconnected" not in line


def test_a_worker_refusing_what_its_peers_serve_is_ejected(spawn_worker, spawn_router, spawn_fault):
    good = spawn_worker("--worker-id", "good")
    bad = spawn_fault("400")
    router = spawn_router(good, bad)
    statuses = [httpx.post(f"{router.url}/tts", json=tts_params(text=f"Request number {i}."), timeout=30).status_code
                for i in range(40)]
    assert worker_entry(router, bad.url)["ejected"]
    assert "error rate" in router.log_text()
    # It looked the fastest, so it drew traffic until its error rate stood out; from then on the peer serves.
    # Its refusals are retried on the peer once three in a row have failed: clients see at most those three.
    assert statuses[-10:] == [200] * 10 and statuses.count(400) <= 3, statuses


def test_a_cold_worker_is_priced_at_its_peers_speed(spawn_worker, spawn_router):
    slow = ("--synthetic-base-seconds", "0", "--synthetic-seconds-per-char", "0.01")
    warm = spawn_worker("--worker-id", "warm", *slow)
    httpx.post(f"{warm.url}/tts", json=tts_params(), timeout=30)  # measured: ~0.01 s per character
    cold = spawn_worker("--worker-id", "cold", *slow)
    router = spawn_router(warm, cold)

    async def burst() -> list[str]:
        async with httpx.AsyncClient(timeout=60) as client:
            answers = await asyncio.gather(*(client.post(f"{router.url}/tts", json=tts_params()) for _ in range(8)))
        return [a.headers["x-worker-id"] for a in answers]

    served = asyncio.run(burst())
    # Priced at 0 s, the cold worker took the whole burst; priced at its peer's speed the burst is shared.
    assert 2 <= served.count("cold") <= 6, served


# -- 2. a connection broken under the request: retried once, then condemned --------------------------------------


def test_a_request_that_breaks_two_workers_is_answered_502_and_refused_at_once_after(spawn_worker, spawn_router,
                                                                                    spawn_fault):
    resets = [spawn_fault("reset"), spawn_fault("reset")]
    good = spawn_worker("--worker-id", "good", "--synthetic-base-seconds", "1")  # looks slower: tried last
    router = spawn_router(*resets, good, args=("--max-retries", "3"))
    httpx.post(f"{good.url}/tts", json=tts_params(), timeout=30)
    eventually(lambda: httpx.get(f"{good.url}/stats").json()["processed"] == 1)
    killer = tts_params(text="The request that kills workers.")
    r = httpx.post(f"{router.url}/tts", json=killer, timeout=30)
    assert r.status_code == 502, r.text
    assert "broke the connection of 2 workers" in r.json()["message"]
    routed = {f.url: worker_entry(router, f.url)["routed"] for f in resets}
    assert sum(routed.values()) == 2  # retried once, never a third time
    again = httpx.get(f"{router.url}/tts", params=killer, timeout=30)  # GET or POST: the same request
    assert again.status_code == 502 and "refused without trying another" in again.json()["message"]
    assert {f.url: worker_entry(router, f.url)["routed"] for f in resets} == routed
    assert worker_entry(router, good.url)["routed"] == 0


def test_one_broken_connection_is_retried_on_another_worker(spawn_worker, spawn_router, spawn_fault):
    reset = spawn_fault("reset")
    good = spawn_worker("--worker-id", "good", "--synthetic-base-seconds", "0.5")  # measured slower: tried second
    httpx.post(f"{good.url}/tts", json=tts_params(), timeout=30)
    router = spawn_router(reset, good)
    r = httpx.post(f"{router.url}/tts", json=tts_params(), timeout=30)
    assert r.status_code == 200 and r.headers["x-worker-id"] == "good"
    assert r.headers["x-retries"] == "1"


# -- 4. no silent loss -----------------------------------------------------------------------------------------


async def _read_stream(url: str, params: dict) -> tuple[int, int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/tts", params=params) as r:
            got = 0
            try:
                async for chunk in r.content.iter_any():
                    got += len(chunk)
            except aiohttp.ClientPayloadError as exc:
                return r.status, got, type(exc).__name__
            return r.status, got, ""


def test_a_stream_past_its_deadline_is_cut_visibly_and_counted_failed(spawn_worker, spawn_router):
    worker = spawn_worker("--request-timeout", "1", "--synthetic-base-seconds", "0",
                          "--synthetic-seconds-per-char", "0.01")
    router = spawn_router(worker)
    params = {k: str(v) for k, v in tts_params(text="Hello there. " * 30, media_type="raw", streaming_mode="1",
                                                fragment_interval="0").items()}
    for url in (worker.url, router.url):
        status, got, error = asyncio.run(_read_stream(url, params))
        assert status == 200 and got > 0 and error == "ClientPayloadError", (url, status, got, error)
    stats = httpx.get(f"{router.url}/concurrent_stats").json()
    assert stats["failed_requests"] == 1 and stats["completed_requests"] == 0
    assert "stream aborted" in worker.log_text() and "deadline" in worker.log_text()


@pytest.mark.parametrize("streaming", ["0", "1"])
def test_a_body_cut_by_the_worker_is_cut_for_the_client_and_counted_failed(spawn_router, spawn_fault, streaming):
    cut = spawn_fault("cut")
    router = spawn_router(cut)
    params = {k: str(v) for k, v in tts_params(media_type="raw", streaming_mode=streaming).items()}
    status, got, error = asyncio.run(_read_stream(router.url, params))
    assert status == 200 and error == "ClientPayloadError", (status, got, error)
    stats = httpx.get(f"{router.url}/concurrent_stats").json()
    assert stats["failed_requests"] == 1 and stats["success_rate"] == 0


def test_a_drain_that_runs_out_of_time_answers_503_before_any_byte(spawn_worker):
    worker = spawn_worker("--synthetic-base-seconds", "3", "--drain-timeout", "0.5")

    async def requests() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            pending = [asyncio.ensure_future(client.post(f"{worker.url}/tts", json=tts_params())) for _ in range(3)]
            await asyncio.sleep(0.5)
            worker.proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*pending))

    answers = asyncio.run(requests())
    assert [a.status_code for a in answers] == [503, 503, 503]
    for a in answers:
        assert a.headers["retry-after"] == "1" and "retry on another worker" in a.json()["message"]
    assert worker.proc.wait(30) == 0
    assert "drain timeout" in worker.log_text() and "Internal Server Error" not in worker.log_text()


def test_the_router_retries_what_a_drain_overrun_gave_back(spawn_worker, spawn_router):
    doomed = spawn_worker("--worker-id", "doomed", "--synthetic-base-seconds", "3", "--drain-timeout", "0.3")
    spare = spawn_worker("--worker-id", "spare")
    router = spawn_router(doomed, spare, args=("--policy", "round-robin"))

    async def requests() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            pending = [asyncio.ensure_future(client.post(f"{router.url}/tts", json=tts_params())) for _ in range(4)]
            await asyncio.sleep(0.6)
            doomed.proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*pending))

    answers = asyncio.run(requests())
    assert [a.status_code for a in answers] == [200] * 4
    assert {a.headers["x-worker-id"] for a in answers} == {"spare"}
    assert sum(int(a.headers["x-retries"]) for a in answers) >= 1


# -- 5. bounded resources --------------------------------------------------------------------------------------


def _raw_request(port: int, data: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _busy(port: int) -> socket.socket:
    """A connection with a request in progress: its headers complete, its body never sent."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /tts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n")
    return s


def _closed_by_server(s: socket.socket, wait: float = 5.0) -> bytes:
    s.settimeout(wait)
    try:
        return s.recv(100) or b"closed"
    except ConnectionResetError:
        return b"closed"


def test_idle_connections_make_room_and_only_busy_ones_fill_the_limit(spawn_worker, spawn_router):
    """Issue 30 (this test asserted the old behaviour: a 503 for a new client while idle sockets filled the table).
    At the limit the oldest idle connection is closed for a new one; a 503 comes only when every connection has a
    request in progress; idle ones still close after the keep-alive timeout."""
    worker = spawn_worker()
    router = spawn_router(worker, args=("--max-connections", "20", "--keepalive-timeout", "2"))
    idle = [socket.create_connection(("127.0.0.1", router.port)) for _ in range(30)]
    busy: list[socket.socket] = []
    try:
        r = httpx.post(f"{router.url}/tts", json=tts_params(), timeout=30)  # 30 idle sockets in its way
        assert r.status_code == 200
        assert all(_closed_by_server(s) == b"closed" for s in idle[:11])  # displaced oldest first, unanswered
        busy = [_busy(router.port) for _ in range(20)]  # displace the rest; then the table is full of requests
        time.sleep(0.5)  # their headers read
        answer = _raw_request(router.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in answer.lower()
        assert b'"message": "too many connections (limit 20), each with a request in progress' in answer
        assert all(_closed_by_server(s) == b"closed" for s in idle[11:])
    finally:
        for s in idle + busy:
            s.close()
    lone = socket.create_connection(("127.0.0.1", router.port))
    started = time.monotonic()
    assert _closed_by_server(lone) == b"closed" and time.monotonic() - started < 4  # idle: closed after 2 s
    assert httpx.post(f"{router.url}/tts", json=tts_params(), timeout=30).status_code == 200


def test_one_client_address_displaces_only_its_own_connections(spawn_worker):
    worker = spawn_worker("--max-connections-per-peer", "5")
    busy = [_busy(worker.port) for _ in range(5)]
    time.sleep(0.5)  # their headers read
    try:
        answer = _raw_request(worker.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503") and b"limit 5 per client address" in answer
    finally:
        for s in busy:
            s.close()
    time.sleep(0.5)  # their closes seen
    idle = [socket.create_connection(("127.0.0.1", worker.port)) for _ in range(5)]
    try:  # at its cap with idle connections, the address's next one takes the place of its oldest
        assert _raw_request(worker.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
        assert _closed_by_server(idle[0]) == b"closed"
    finally:
        for s in idle:
            s.close()


@pytest.mark.parametrize("component", ["worker", "router"])
def test_slow_headers_and_bodies_time_out_and_big_bodies_are_refused(spawn_worker, spawn_router, component):
    worker = spawn_worker("--read-timeout", "1")
    target = worker if component == "worker" else spawn_router(worker, args=("--read-timeout", "1"))
    started = time.monotonic()
    answer = _raw_request(target.port, b"GET /tts?text=x HTTP/1.1\r\nhost: x\r\nx-slow: ")
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    assert time.monotonic() - started < 5
    started = time.monotonic()
    answer = _raw_request(target.port, b"POST /tts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                          b"content-length: 100\r\n\r\n{\"text\": ")  # a body that never finishes
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5
    r = httpx.post(f"{target.url}/tts", content=b"{" + b" " * (2 << 20) + b"}",
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["message"] == "body: over the limit of 1048576 bytes"


def test_lists_paths_and_audio_length_are_capped_with_the_field_named(spawn_worker):
    worker = spawn_worker("--max-body-bytes", str(16 << 20))
    many = httpx.post(f"{worker.url}/tts", json=tts_params(aux_ref_audio_paths=["reference.wav"] * 300_000),
                      timeout=30)
    assert many.status_code == 400 and many.json()["field"] == "aux_ref_audio_paths"
    long_name = httpx.get(f"{worker.url}/tts", params=tts_params(ref_audio_path="x" * 300), timeout=30)
    assert long_name.status_code == 400 and long_name.json()["field"] == "ref_audio_path"
    assert "too long" in long_name.json()["message"]
    for text in ("a" + "." * 999, "a. " * 300):  # refused while the audio is made / before synthesis starts
        silence = httpx.get(f"{worker.url}/tts", params=tts_params(text=text, fragment_interval=10), timeout=30)
        assert silence.status_code == 400 and "max_audio_seconds" in silence.json()["message"], silence.text
        assert silence.json()["field"] == "text"
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{worker.proc.pid}/status").read_text().splitlines()
                  if line.startswith("VmHWM:"))
    assert rss_kb < 600_000  # the 10,000 s of silence was never made (it took 2.6 GB before)
    assert httpx.get(f"{worker.url}/tts", params=tts_params(), timeout=30).status_code == 200


def _rss_kb(pid: int) -> int:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:"))


def test_the_router_does_not_grow_per_request(spawn_worker, spawn_router):
    worker = spawn_worker(*FAST, "--max-queue-size", "50")
    router = spawn_router(worker)

    async def load(n: int) -> None:
        async with aiohttp.ClientSession() as session:
            async def one() -> None:
                async with session.post(f"{router.url}/tts", json=tts_params(text="Hi.", media_type="raw")) as r:
                    assert r.status == 200
                    await r.read()

            for _ in range(n // 8):
                await asyncio.gather(*(one() for _ in range(8)))

    asyncio.run(load(800))  # warm: allocator pools, metric children, pooled connections
    before = _rss_kb(router.proc.pid)
    asyncio.run(load(2400))
    grown = _rss_kb(router.proc.pid) - before
    # A bound, not a reproduction: the review measured 1.2 KB per request through `up` (4000 mixed requests);
    # on this tiny request both the old and this router grow under 0.1 KB per request (allocator noise).
    assert grown < 1024, f"router RSS grew {grown} KB over 2400 requests"


def test_the_router_keeps_nothing_of_streams_its_clients_left(spawn_worker, spawn_router):
    """Issue 30: each stream a client left after its first bytes stayed in the router for good (about 200 KB:
    its frames, held by the traceback of the one exception aiohttp raises for every response closed under a read).
    300 of them grew it by 60 MB; now it comes back to where it was."""
    worker = spawn_worker("--synthetic-base-seconds", "0", "--synthetic-seconds-per-char", "0.0001")
    router = spawn_router(worker)
    warm = asyncio.run(abandon_streams(router.port, 150))  # allocator pools, pooled connections, metric children
    assert warm.began == 150, warm
    assert wait_idle(worker)
    before = _rss_kb(router.proc.pid)
    seen = asyncio.run(abandon_streams(router.port, 300))
    assert seen.began == 300, seen
    assert wait_idle(worker)
    grown = (_rss_kb(router.proc.pid) - before) / 1024
    assert grown < 8, f"router RSS grew {grown:.1f} MB over 300 abandoned streams"
    assert httpx.post(f"{router.url}/tts", json=tts_params(), timeout=30).status_code == 200


# -- 6. admin confinement, secrets, one Retry-After --------------------------------------------------------------


def test_weight_paths_are_confined_to_the_models_directory(spawn_worker, tmp_path):
    (tmp_path / "ok.ckpt").write_bytes(b"weights")
    worker = spawn_worker("--models-dir", str(tmp_path), env={"TTSC_ADMIN_TOKEN": "t0ken"})
    auth = {"Authorization": "Bearer t0ken"}
    for path in ("/etc/passwd", "../../etc/passwd", str(tmp_path / ".." / "x.ckpt")):
        r = httpx.get(f"{worker.url}/set_gpt_weights", params={"weights_path": path}, headers=auth)
        assert r.status_code == 400 and "outside the models directory" in r.json()["Exception"], r.text
    r = httpx.get(f"{worker.url}/set_gpt_weights", params={"weights_path": "ok.ckpt"}, headers=auth)
    assert r.status_code == 200


def test_admin_tokens_never_come_from_the_command_line(spawn_worker, tmp_path):
    for command in ("worker", "router", "up"):
        helptext = subprocess.run([sys.executable, "-m", "tts_cli", command, "--help"], capture_output=True,
                                  text=True, timeout=60).stdout
        assert "--admin-token " not in helptext and "--admin-token=" not in helptext
        assert "--admin-token-file" in helptext
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    worker = spawn_worker("--admin-token-file", str(token))
    r = httpx.get(f"{worker.url}/set_refer_audio", params={"refer_audio_path": "reference.wav"},
                  headers={"Authorization": "Bearer from-a-file"})
    assert r.status_code == 200
    assert "from-a-file" not in Path(f"/proc/{worker.proc.pid}/cmdline").read_text()


def test_router_and_worker_give_the_same_retry_after(spawn_worker, spawn_router):
    worker = spawn_worker("--max-queue-size", "1", "--synthetic-base-seconds", "2.2")
    assert httpx.post(f"{worker.url}/tts", json=tts_params(), timeout=30).status_code == 200  # measured: 2.2 s
    router = spawn_router(worker)

    async def full() -> tuple[httpx.Response, httpx.Response, int]:
        async with httpx.AsyncClient(timeout=30) as client:
            busy = asyncio.ensure_future(client.post(f"{worker.url}/tts", json=tts_params()))
            await asyncio.sleep(0.5)
            direct = await client.post(f"{worker.url}/tts", json=tts_params())
            routed = await client.post(f"{router.url}/tts", json=tts_params())
            estimate = (await client.get(f"{worker.url}/stats")).json()["retry_after_seconds"]
            await busy
            return direct, routed, estimate

    direct, routed, estimate = asyncio.run(full())
    assert direct.status_code == routed.status_code == 503
    assert direct.headers["retry-after"] == routed.headers["retry-after"] == str(estimate) == "3"
