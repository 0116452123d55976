"""Settings precedence: flag > TTSC_* env > tts_infer.yaml > default; the seed's yaml keys are read."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tts_worker.settings import WorkerSettings

YAML = """\
custom:
  device: cuda
  is_half: true
  version: v2
  t2s_weights_path: GPT_SoVITS/pretrained_models/s1.ckpt
  vits_weights_path: GPT_SoVITS/pretrained_models/s2G.pth
enable_concurrent_tts: true
num_gpus: 4
max_queue_size: 7
num_warmup: 1
tts_cluster:
  request_timeout: 45
"""


@pytest.fixture
def yaml_file(tmp_path: Path) -> Path:
    path = tmp_path / "tts_infer.yaml"
    path.write_text(YAML)
    return path


@pytest.mark.unit
def test_yaml_values_are_read(yaml_file, monkeypatch):
    monkeypatch.delenv("TTSC_MAX_QUEUE_SIZE", raising=False)
    s = WorkerSettings(tts_config=yaml_file)
    assert s.max_queue_size == 7 and s.num_warmup == 1 and s.request_timeout == 45
    assert s.enable_concurrent_tts is True and s.num_gpus == 4
    assert s.gpt_sovits_config["t2s_weights_path"].endswith("s1.ckpt")
    assert s.resolved_device() == "cpu"  # the yaml's device belongs to GPT-SoVITS; piper stays on the CPU


@pytest.mark.unit
def test_env_beats_yaml_and_flags_beat_env(yaml_file, monkeypatch):
    monkeypatch.setenv("TTSC_MAX_QUEUE_SIZE", "5")
    monkeypatch.setenv("TTSC_TTS_CONFIG", str(yaml_file))
    assert WorkerSettings().max_queue_size == 5
    assert WorkerSettings(max_queue_size=3).max_queue_size == 3
    assert WorkerSettings().num_gpus == 4  # the yaml was found through the env var


@pytest.mark.unit
def test_v2_block_when_no_custom(tmp_path):
    path = tmp_path / "tts_infer.yaml"
    path.write_text("v1:\n  version: v1\nv2:\n  version: v2\n  device: cpu\n")
    assert WorkerSettings(tts_config=path).gpt_sovits_config == {"version": "v2", "device": "cpu"}


@pytest.mark.unit
def test_device_values():
    assert WorkerSettings(device="CUDA:1").device == "cuda:1"
    with pytest.raises(ValueError):
        WorkerSettings(device="tpu")


@pytest.mark.process
def test_a_worker_started_with_the_yaml_uses_it(spawn_worker, yaml_file):
    worker = spawn_worker("-c", str(yaml_file))
    stats = httpx.get(f"{worker.url}/stats").json()
    assert stats["capacity"] == 7


@pytest.mark.process
def test_env_vars_reach_a_worker(spawn_worker):
    worker = spawn_worker(env={"TTSC_MAX_QUEUE_SIZE": "2", "TTSC_WORKER_ID": "gpu-3"})
    stats = httpx.get(f"{worker.url}/stats").json()
    assert stats["capacity"] == 2 and stats["worker_id"] == "gpu-3"
