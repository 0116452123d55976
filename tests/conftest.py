"""Fixtures: real worker and router processes on 127.0.0.1 ports, spoken to over real HTTP. Helpers that test
modules import live in tests/support/, never here."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.params import ADMIN_TOKEN
from support.paths import ROOT
from tts_cli.processes import ServiceProcess, start_router, start_worker

# Tier markers, checked on every test; the unit tier refused processes and sockets (tests/support/tiers.py).
pytest_plugins = ["support.tiers"]


@pytest.fixture(scope="session")
def voice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A voice directory with the bundled reference clip, a nested clip, and a symlink that leads outside."""
    from tts_worker.reference import write_reference_clip

    root = tmp_path_factory.mktemp("voices")
    ref = write_reference_clip(root)
    (root / "speakers").mkdir()
    shutil.copy(ref, root / "speakers" / "alice.wav")
    outside = tmp_path_factory.mktemp("outside") / "secret.wav"
    shutil.copy(ref, outside)
    (root / "escape.wav").symlink_to(outside)
    (root / "inside-link.wav").symlink_to(root / "reference.wav")
    return root


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-logs")


@pytest.fixture(scope="session")
def piper_worker(voice_dir: Path, logs_dir: Path) -> Iterator[ServiceProcess]:
    """The default engine with the bundled voice; deterministic so equal requests give equal audio."""
    worker = start_worker(
        ["--engine", "piper", "--piper-deterministic", "--voice-dir", str(voice_dir), "--num-warmup", "1",
         "--max-text-length", "600"],
        logs_dir, env={"TTSC_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    yield worker
    worker.stop()


@pytest.fixture
def spawn_worker(voice_dir: Path, logs_dir: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start extra workers for one test (synthetic engine unless told otherwise); all stopped afterwards."""
    started: list[ServiceProcess] = []

    def spawn(*args: str, engine: str = "synthetic", env: dict[str, str] | None = None) -> ServiceProcess:
        worker = start_worker(["--engine", engine, "--voice-dir", str(voice_dir), *args], logs_dir, env=env)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.stop()


@pytest.fixture
def spawn_router(logs_dir: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start routers in front of the given workers for one test; all stopped afterwards."""
    started: list[ServiceProcess] = []

    def spawn(*workers: ServiceProcess, args: tuple[str, ...] = (), wait_ready: bool = True,
              env: dict[str, str] | None = None) -> ServiceProcess:
        flags = [f for w in workers for f in ("--worker", w.url)]
        router = start_router(["--poll-interval", "0.05", *flags, *args], logs_dir, wait_ready=wait_ready, env=env)
        started.append(router)
        return router

    yield spawn
    for router in started:
        router.stop()


GSV_GENERATOR = Path(__file__).with_name("support") / "gpt_sovits_weights.py"


@pytest.fixture(scope="session")
def gpt_sovits_weights() -> Path:
    """Two random tiny GPT-SoVITS v2 weight sets (w0, w1) and a stub NLTK tagger, generated once and kept under
    build/ (keyed by the generator's content), since they take a few seconds and ~200 MB."""
    import hashlib
    import subprocess
    import sys

    key = hashlib.sha256(GSV_GENERATOR.read_bytes()).hexdigest()[:12]
    root = ROOT / "build" / "test-cache" / f"gpt-sovits-{key}"
    if not (root / "done").is_file():
        shutil.rmtree(root, ignore_errors=True)
        for seed in (0, 1):
            extra = ["--nltk-data", str(root / "nltk_data")] if seed == 0 else []
            subprocess.run([sys.executable, str(GSV_GENERATOR), str(root / f"w{seed}"), "--seed", str(seed),
                            "--small-vits", *extra], check=True, capture_output=True, timeout=600)
        (root / "done").write_text(key)
    return root


@pytest.fixture(scope="session")
def gpt_sovits_worker(gpt_sovits_weights: Path, voice_dir: Path, logs_dir: Path) -> Iterator[ServiceProcess]:
    """The real GPT-SoVITS pipeline on generated weights, on the CPU, with a queue of 2."""
    shutil.copy(gpt_sovits_weights / "w0" / "ref.wav", voice_dir / "gsv-ref.wav")
    worker = start_worker(
        ["--engine", "gpt-sovits", "--tts-config", str(gpt_sovits_weights / "w0" / "tts_infer.yaml"),
         "--voice-dir", str(voice_dir), "--num-warmup", "1", "--max-queue-size", "2",
         "--models-dir", str(gpt_sovits_weights)],
        logs_dir, env={"NLTK_DATA": str(gpt_sovits_weights / "nltk_data"), "TTSC_ADMIN_TOKEN": ADMIN_TOKEN},
        ready_timeout=300,
    )
    yield worker
    worker.stop()
