"""The chaos suite (`tts-cluster bench chaos`): its outcome classifier against a server that misbehaves in known
ways, the emulator's write-fault hook, and one real `--quick` run of every scenario, which must lose no request
and keep every invariant its scenario checks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import kubernetes
import pytest
from aiohttp import web
from kubernetes.client import ApiClient, CoreV1Api

from support.kube_emulator import KubeAPI
from tts_bench.chaos import SCENARIOS
from tts_bench.chaos_load import ChaosClient, Clock, Job, expected_bytes
from tts_cli.processes import ServiceProcess, free_port

pytestmark = pytest.mark.process

TEXT = "One sentence here. And a second one!"


async def _serve(mode: str, request: web.Request) -> web.StreamResponse:
    full = expected_bytes(TEXT, 32000)
    headers = {"X-Sample-Rate": "32000"}
    if mode == "error":
        return web.json_response({"message": "full"}, status=503)
    if mode == "hang":
        await asyncio.sleep(30)
    response = web.StreamResponse(headers=headers)
    if mode == "cut":
        response.content_length = full
    await response.prepare(request)
    await response.write(b"\0" * (full if mode == "whole" else full // 2))
    if mode == "cut" and request.transport is not None:
        request.transport.abort()
        return response
    await response.write_eof()  # "short" ends cleanly: a short stream with no error
    return response


def _handler(mode: str):  # type: ignore[no-untyped-def]
    async def handle(request: web.Request) -> web.StreamResponse:
        return await _serve(mode, request)

    return handle


@pytest.fixture
async def misbehaving() -> AsyncIterator[str]:
    app = web.Application()
    for mode in ("whole", "short", "cut", "error", "hang"):
        app.router.add_post(f"/{mode}/tts", _handler(mode))
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_outcomes_are_classified(misbehaving: str) -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    expect = {"whole": "ok", "short": "lost", "cut": "failed", "error": "failed", "hang": "lost"}
    async with ChaosClient([f"{misbehaving}/{m}" for m in expect], Clock(), bound=1.0) as client:
        got = {m: (await client.send(Job(TEXT, mode=1))).verdict for m in expect}
    async with ChaosClient([refused], Clock(), bound=1.0) as client:
        got["refused"] = (await client.send(Job(TEXT))).verdict
    assert got == {**expect, "refused": "failed"}


async def test_failover_moves_a_refused_request_to_the_next_entry(misbehaving: str) -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    async with ChaosClient([refused, f"{misbehaving}/whole"], Clock(), bound=2.0, failover=True) as client:
        out = await client.send(Job(TEXT))
    assert (out.verdict, out.attempts, out.entry) == ("ok", 2, f"{misbehaving}/whole")


async def test_expected_bytes_match_a_real_synthetic_worker(spawn_worker: Callable[..., ServiceProcess]) -> None:
    """The loss check's premise: the audio length is known from the text alone, whole or streamed."""
    worker = spawn_worker("--synthetic-seconds-per-char", "0.0001", "--num-warmup", "0")
    async with ChaosClient([worker.url], Clock(), bound=20.0) as client:
        texts = [TEXT, "No end mark", "Three. Short. Ones."]
        outs = [await client.send(Job(t, mode)) for t in texts for mode in (0, 1, 2, 3)]
    assert [(o.verdict, o.nbytes) for o in outs] == [("ok", o.expected) for o in outs]


def test_emulator_answers_planned_writes_with_errors() -> None:
    with KubeAPI() as kube:
        kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig_path))
        core = CoreV1Api(ApiClient())
        kube.fail_writes([409, 0, 503], plurals=["configmaps"])
        statuses = []
        for i in range(4):
            try:
                core.create_namespaced_config_map("default", {"metadata": {"name": f"cm{i}"}})
                statuses.append(201)
            except kubernetes.client.ApiException as exc:
                statuses.append(exc.status)
        assert statuses == [409, 201, 503, 201]
        names = [c.metadata.name for c in core.list_namespaced_config_map("default").items]
        assert names == ["cm1", "cm3"]  # a refused write stores nothing
        assert kube.fault_counts() == {"matched": 3, "injected": {409: 1, 503: 1}, "left": 0}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_quick_chaos_run_loses_nothing(tmp_path: Path, voice_dir: Path) -> None:
    # Its own process group: if it overran, the workers and routers it started go with it.
    proc = subprocess.Popen([sys.executable, "-m", "tts_cli", "bench", "chaos", "--quick", "--voice-dir",
                             str(voice_dir), "--out", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    path = tmp_path / "chaos.json"
    assert path.is_file(), stdout[-4000:] + stderr[-4000:]
    report = json.loads(path.read_text())
    rows = {s["key"]: s for s in report["scenarios"]}
    assert list(rows) == [key for key, _ in SCENARIOS]
    summary = "\n" + stdout[-8000:]
    for key, row in rows.items():
        assert row["error"] is None, f"{key}: {row['error']}{summary}"
        assert row["sent"] > 0, f"{key} sent nothing{summary}"
        assert row["lost"] == 0, f"{key}: {row['lost']} lost: {row['lost_by_reason']}{summary}"
        broken = [f"{c['name']}: {c['detail']}" for c in row["checks"] if not c["ok"]]
        assert not broken, f"{key}: {broken}{summary}"  # memory back when idle, no 503 while a peer has room, ...
    assert report["command"].startswith("tts-cluster bench chaos") and report["flags"]["quick"] is True
    assert "chaos (--quick)" in stdout
