"""The cluster's default voice is declarative: a weight switch through the router reaches every worker or none
(a partial failure is put back and reported), and the router keeps the choice, so a worker that joins later (or
restarts on its yaml's weights) is brought to it before it gets a default-voice request."""

from __future__ import annotations

import httpx
import pytest

from support.params import ADMIN_TOKEN, tts_params
from support.wait import eventually, stats_when

pytestmark = pytest.mark.process

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ENV = {"TTSC_ADMIN_TOKEN": ADMIN_TOKEN}


def models(tmp_path, name: str, *files: str) -> str:
    folder = tmp_path / name
    folder.mkdir()
    for file in files:
        (folder / file).write_bytes(b"weights")
    return str(folder)


def switch(router, path: str) -> httpx.Response:
    return httpx.get(f"{router.url}/set_gpt_weights", params={"weights_path": path}, headers=AUTH, timeout=30)


def test_a_switch_is_all_or_none_and_kept_for_workers_that_join_later(tmp_path, spawn_worker, spawn_router):
    full = spawn_worker("--models-dir", models(tmp_path, "full", "a.ckpt", "b.ckpt"), env=ENV)
    partial = spawn_worker("--models-dir", models(tmp_path, "partial", "a.ckpt"), env=ENV)
    workers_file = tmp_path / "workers.txt"
    workers_file.write_text(f"{full.url}\n{partial.url}\n")
    router = spawn_router(args=("--workers-file", str(workers_file)), env={"TTSC_ROUTER_ADMIN_TOKEN": ADMIN_TOKEN})
    eventually(lambda: len(httpx.get(f"{router.url}/concurrent_stats").json()["workers"]) == 2)

    r = switch(router, "a.ckpt")
    assert r.status_code == 200 and r.json()["message"] == "success", r.text
    for w in (full, partial):
        assert httpx.get(f"{w.url}/stats").json()["gpt_weights"].endswith("/a.ckpt")

    # b.ckpt exists on one worker only: that one switched, then was put back; the refusal names the failure.
    r = switch(router, "b.ckpt")
    assert r.status_code == 400 and r.json()["message"] == "change gpt weight failed", r.text
    assert r.json()["rolled_back"] is True
    assert r.json()["workers"][full.url]["rolled_back"] is True
    assert httpx.get(f"{full.url}/stats").json()["gpt_weights"].endswith("/a.ckpt")

    # Workers that join now start on their yaml's weights (none here). One lacks a.ckpt: it can never be brought
    # to the cluster's choice, so it gets no default-voice request. The other is brought, then takes its share.
    stray = spawn_worker("--models-dir", models(tmp_path, "stray"), env=ENV)
    late = spawn_worker("--models-dir", models(tmp_path, "late", "a.ckpt"), env=ENV)
    assert httpx.get(f"{late.url}/stats").json()["gpt_weights"] is None
    workers_file.write_text(f"{full.url}\n{partial.url}\n{stray.url}\n{late.url}\n")
    late_id = stats_when(late.url, lambda s: (s["gpt_weights"] or "").endswith("/a.ckpt"), timeout=20)["worker_id"]
    eventually(lambda: len(httpx.get(f"{router.url}/concurrent_stats").json()["workers"]) == 4)
    served = [httpx.post(f"{router.url}/tts", json=tts_params(), timeout=30) for _ in range(30)]
    assert all(r.status_code == 200 for r in served)
    ids = {r.headers["x-worker-id"] for r in served}
    assert late_id in ids
    assert httpx.get(f"{stray.url}/stats").json()["processed"] == 0
    assert "default voice not applied to a worker" in router.log_text()


def test_without_a_weights_path_or_token_nothing_is_switched(spawn_worker, spawn_router, tmp_path):
    worker = spawn_worker("--models-dir", models(tmp_path, "m", "a.ckpt"), env=ENV)
    router = spawn_router(worker, env={"TTSC_ROUTER_ADMIN_TOKEN": ADMIN_TOKEN})
    r = httpx.get(f"{router.url}/set_sovits_weights", headers=AUTH, timeout=30)
    assert r.status_code == 400 and r.json() == {"message": "sovits weight path is required",
                                                 "field": "weights_path"}
    r = httpx.get(f"{router.url}/set_sovits_weights", params={"weights_path": "a.ckpt"}, timeout=30)
    assert r.status_code == 403
    assert httpx.get(f"{worker.url}/stats").json()["sovits_weights"] is None


def test_a_router_started_with_a_default_voice_brings_every_worker_to_it(spawn_worker, spawn_router, tmp_path):
    worker = spawn_worker("--models-dir", models(tmp_path, "m", "a.ckpt", "b.ckpt"), env=ENV)
    router = spawn_router(worker, env={"TTSC_ROUTER_ADMIN_TOKEN": ADMIN_TOKEN,
                                       "TTSC_ROUTER_DEFAULT_GPT_WEIGHTS": "a.ckpt"})
    stats_when(worker.url, lambda s: (s["gpt_weights"] or "").endswith("/a.ckpt"), timeout=20)
    chosen = eventually(lambda: (v := httpx.get(f"{router.url}/concurrent_stats").json()["default_voice"])
                        and v["workers_behind"] == 0 and v)
    assert chosen == {"gpt_weights": "a.ckpt", "sovits_weights": None, "switched": False, "workers_behind": 0}
    assert switch(router, "b.ckpt").status_code == 200
    chosen = httpx.get(f"{router.url}/concurrent_stats").json()["default_voice"]
    assert chosen["gpt_weights"] == "b.ckpt" and chosen["switched"] is True
