"""`tts-cluster` command: useful --help, every setting reachable as a flag, clear start-up failures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support.paths import ROOT
from tts_worker.settings import WorkerSettings

pytestmark = pytest.mark.process


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tts_cli", *args], capture_output=True, text=True, timeout=timeout)


def test_top_level_help_lists_commands():
    done = run_cli("--help")
    assert done.returncode == 0
    for command in ("up", "worker", "router", "operator", "voices", "bench"):
        assert command in done.stdout


def test_worker_help_names_every_setting_and_its_env_var():
    done = run_cli("worker", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for name in WorkerSettings.model_fields:
        if name == "gpt_sovits_config":
            continue
        assert f"--{name.replace('_', '-')}" in text, name
        assert f"TTSC_{name.upper()}" in text.replace(" ", ""), name
    for api_v2_flag in ("-a", "--bind_addr", "-p", "-c", "--tts_config"):
        assert api_v2_flag in text


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--device", "gpu"], "device"),
        (["--max-queue-size", "0"], "max_queue_size"),
        (["--engine", "espeak"], "invalid choice"),
    ],
)
def test_bad_flags_fail_with_a_message(args, needle):
    done = run_cli("worker", *args)
    assert done.returncode == 2
    assert needle in done.stderr


def test_missing_voice_names_the_path(tmp_path):
    missing = tmp_path / "nowhere.onnx"
    done = run_cli("worker", "--piper-voice", str(missing), "-p", "1")
    assert done.returncode == 2
    assert str(missing) in done.stderr


def test_a_warm_up_that_raises_anything_is_a_named_start_up_error():
    """Not only an engine's own errors: a device fault in the warm-up (CUDA out of memory, say) is exit 2 with the
    error named too, rather than a traceback. The engine's warm-up is replaced in the worker's own process."""
    code = (
        "import sys\n"
        "from tts_worker.engines.synthetic import SyntheticEngine\n"
        "def warmup(self, count):\n"
        "    raise RuntimeError('CUDA error: out of memory')\n"
        "SyntheticEngine.warmup = warmup\n"
        "from tts_cli.main import main\n"
        "sys.exit(main(['worker', '--engine', 'synthetic', '-p', '1']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "warm-up failed: RuntimeError: CUDA error: out of memory" in done.stderr
    assert "Traceback" not in done.stderr

def test_cuda_without_a_cuda_runtime_is_refused_by_name():
    done = run_cli("worker", "--device", "cuda:0", "-p", "1")
    assert done.returncode == 2
    assert "CUDAExecutionProvider" in done.stderr


def test_router_help_names_every_setting_and_its_env_var():
    from tts_router.settings import RouterSettings

    done = run_cli("router", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split()).replace(" ", "")
    for name in RouterSettings.model_fields:
        assert f"--{name.replace('_', '-')}" in text, name
        assert f"TTSC_ROUTER_{name.upper()}" in text, name


def test_router_without_workers_says_how_to_give_them():
    done = run_cli("router", "-p", "1")
    assert done.returncode == 2
    assert "--worker URL" in done.stderr


def test_router_rejects_a_bad_worker_url():
    done = run_cli("router", "--worker", "localhost:9881")
    assert done.returncode == 2
    assert "http://" in done.stderr


def test_operator_folder_never_shadows_the_standard_library():
    # -S: no site packages, so nothing has imported the real `operator` before the repository root is searched.
    repo = ROOT
    done = subprocess.run([sys.executable, "-S", "-c", "import operator; print(operator.__file__)"],
                          capture_output=True, text=True, cwd=repo, timeout=30)
    assert done.returncode == 0, done.stderr
    assert not done.stdout.strip().startswith(str(repo))


def test_a_command_builds_only_its_own_parser_and_help_still_lists_every_command():
    """Issue 30: a router restarted under a supervisor spent half a second importing the worker's, the operator's
    and every benchmark's code to build parsers it never used."""
    code = (
        "import sys\n"
        "from tts_cli.main import build_parser\n"
        "args = build_parser('router').parse_args(['router', '--worker', 'http://127.0.0.1:1'])\n"
        "print(args.func.__name__, sorted(m for m in ('tts_bench', 'tts_worker', 'tts_operator', 'tts_cli.up')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["_run_router", "[]"], done.stderr[-2000:]
    listed = run_cli("--help").stdout
    assert all(f"    {c} " in listed for c in ("up", "worker", "router", "operator", "voices", "bench"))
