"""The images tier: both images built daemonlessly (images/build.sh: buildah, a local Debian base) and run with podman
as Kubernetes runs them (uid 10001, read-only root filesystem, no capabilities, no privilege escalation).

What a user meets: `/tts` through the router container to the worker container returns audio; the health checks
answer healthy on whatever port each container was told to use; SIGTERM lets an in-flight request finish within the
grace period; OCI labels; no compilers, pip caches or the build's CA bundle inside; the size budgets (router <= 300 MB,
worker CPU variant <= 1.8 GB). The measured sizes and build times are written to build/images/report.json.

Skipped only when buildah cannot run at all here, with buildah's own error as the reason; a missing buildah or podman
fails under CI=true (`make test` installs them).
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from support.binaries import require
from support.paths import ROOT
from support.wait import eventually

pytestmark = pytest.mark.images

VERSION = next(line.split('"')[1] for line in (ROOT / "pyproject.toml").read_text().splitlines()
               if line.startswith("version = "))
REGISTRY = "localhost/tts-cluster"
ROUTER_IMAGE = f"{REGISTRY}/router:{VERSION}"
WORKER_IMAGE = f"{REGISTRY}/worker:{VERSION}-cpu"
BUDGET_MB = {"router": 300, "worker": 1800}
REPORT = ROOT / "build" / "images" / "report.json"
UID = 10001
# The reference clip the worker image holds (`tts-cluster voices init` at build), named relative to its voice dir.
API_V2 = {"text_lang": "en", "ref_audio_path": "reference.wav", "prompt_lang": "en", "media_type": "wav"}
# How Kubernetes runs our pods (operator/resources.py RESTRICTED_CONTAINER), in podman's words; /tmp is the pods'
# emptyDir.
RESTRICTED = ["--user", f"{UID}:{UID}", "--read-only", "--tmpfs", "/tmp:rw,size=256m", "--cap-drop", "ALL",
              "--security-opt", "no-new-privileges", "--network", "host"]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """podman as images/podman.sh runs it here (one source for the runtime and cgroup settings)."""
    script = 'source images/podman.sh && "$@"'
    wrapper = "podman_run" if args[:1] == ("run",) else "podman_"
    rest = args[1:] if wrapper == "podman_run" else args
    proc = subprocess.run(["bash", "-c", script, "podman", wrapper, *rest], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {shlex.join(args)} exited {proc.returncode}: {proc.stderr[-3000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Built:
    seconds: float
    sizes: dict[str, int]


@pytest.fixture(scope="module")
def built() -> Built:
    require("buildah", "buildah", "image-tools")
    require("podman", "podman", "image-tools")
    require("mmdebstrap", "mmdebstrap", "image-tools")
    probe = subprocess.run(["buildah", "info"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:  # e.g. no storage driver works in this kernel or container
        pytest.skip(f"buildah cannot run here: {probe.stderr.strip()[-500:]}")
    start = time.monotonic()
    proc = subprocess.run(["images/build.sh"], cwd=ROOT, capture_output=True, text=True, timeout=2400)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, f"images/build.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    sizes = {kind: int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
             for kind, image in (("router", ROUTER_IMAGE), ("worker", WORKER_IMAGE))}
    base = int(podman("image", "inspect", "--format", "{{.Size}}", "localhost/tts-cluster-base:bookworm")
               .stdout.strip())
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"build_seconds": round(seconds, 1), "sizes_bytes": {**sizes, "base": base},
                                  "budget_mb": BUDGET_MB}, indent=2))
    print(f"\nimages built in {seconds:.0f} s; sizes (MB): "
          + ", ".join(f"{k} {v / 1e6:.0f}" for k, v in {**sizes, "base": base}.items()))
    return Built(seconds, sizes)


@dataclass
class Container:
    name: str
    port: int

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def state(self) -> dict[str, object]:
        return dict(json.loads(podman("inspect", "--format", "{{json .State}}", self.name).stdout))


@pytest.fixture(scope="module")
def containers(built: Built) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "0", name, check=False)


def start(containers: list[str], image: str, argv: Sequence[str], port: int, *extra: str) -> Container:
    name = f"ttsc-test-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    podman("run", "--detach", "--name", name, *RESTRICTED, *extra, image, *argv)
    return Container(name, port)


def ready(c: Container, timeout: float) -> None:
    def up() -> bool:
        if c.state().get("Status") not in ("running", "created", "configured"):
            raise AssertionError(f"{c.name} is {c.state().get('Status')}:\n{c.logs()[-3000:]}")
        return httpx.get(f"http://127.0.0.1:{c.port}/healthz", timeout=2).status_code == 200

    eventually(up, timeout=timeout, ignore=(httpx.HTTPError,))


@pytest.fixture(scope="module")
def worker(containers: list[str]) -> Container:
    port = free_port()
    c = start(containers, WORKER_IMAGE, ["worker", "--bind-addr", "127.0.0.1", "--port", str(port),
                                         "--voice-dir", "/var/lib/tts-cluster/voices", "--num-warmup", "1",
                                         "--drain-timeout", "20"], port)
    ready(c, timeout=180)
    return c


@pytest.fixture(scope="module")
def router(containers: list[str], worker: Container) -> Container:
    port = free_port()  # not the image's 9880: the health check must follow it
    c = start(containers, ROUTER_IMAGE, ["router", "--bind-addr", "127.0.0.1", "--port", str(port)], port,
              "--env", f"TTSC_ROUTER_WORKER=http://127.0.0.1:{worker.port}")
    ready(c, timeout=60)
    return c


@pytest.mark.slow
def test_sizes_are_within_budget(built: Built) -> None:
    for kind, size in built.sizes.items():
        assert size <= BUDGET_MB[kind] * 1_000_000, f"the {kind} image is {size / 1e6:.0f} MB: over its budget"


@pytest.mark.parametrize("image", [ROUTER_IMAGE, WORKER_IMAGE])
def test_oci_labels_and_the_user_are_set(built: Built, image: str) -> None:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    labels = config["Labels"]
    for key in ("title", "description", "version", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"{image}: no org.opencontainers.image.{key}"
    assert labels["org.opencontainers.image.version"] == VERSION
    assert "org.opencontainers.image.source" in labels
    assert config["User"] == f"{UID}:{UID}"
    # The OCI image format has no health check: buildah drops it unless it writes the docker format.
    assert inspected["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert (inspected.get("Healthcheck") or {}).get("Test") == ["CMD", "tts-cluster", "healthcheck"]


@pytest.mark.parametrize("image", [ROUTER_IMAGE, WORKER_IMAGE])
def test_no_compilers_pip_caches_or_build_secrets_inside(built: Built, image: str) -> None:
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    ca_size = ca.stat().st_size if ca.is_file() else -1
    # One pass over the image's files: compilers by name, pip caches and secrets by path, and every file as large
    # as this machine's CA bundle (the build secret) by its hash.
    script = (
        "import hashlib, os, sys\n"
        "size = int(sys.argv[1])\n"
        "for top in ('/usr', '/opt', '/root', '/home', '/etc', '/var', '/tmp', '/run', '/app'):\n"
        "    for d, dirs, files in os.walk(top):\n"
        "        for f in files:\n"
        "            p = os.path.join(d, f)\n"
        "            if f in ('gcc', 'g++', 'cc', 'c++', 'clang', 'ld', 'make') or '/.cache/pip' in p "
        "or p.startswith('/run/secrets'):\n"
        "                print('found', p)\n"
        "            elif not os.path.islink(p) and os.path.getsize(p) == size:\n"
        "                print('hash', hashlib.sha256(open(p, 'rb').read()).hexdigest(), p)\n"
    )
    out = podman("run", "--rm", "--entrypoint", "python3", image, "-c", script, str(ca_size)).stdout
    assert not [line for line in out.splitlines() if line.startswith("found")], out
    if ca_size > 0:
        digest = hashlib.sha256(ca.read_bytes()).hexdigest()
        assert f"hash {digest}" not in out, "this machine's CA bundle (the pip_ca build secret) is in the image"
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    assert "BEGIN CERTIFICATE" not in history and "PIP_CERT=/etc" not in history


def test_tts_through_the_router_container_to_the_worker_container(router: Container, worker: Container) -> None:
    r = httpx.post(f"http://127.0.0.1:{router.port}/tts", timeout=60,
                   json={**API_V2, "text": "Hello from two containers."})
    assert r.status_code == 200, r.text
    audio, rate = sf.read(io.BytesIO(r.content))
    assert rate > 0 and len(audio) > rate // 4 and abs(audio).max() > 0.01, "no speech in the answer"
    stats = httpx.get(f"http://127.0.0.1:{router.port}/concurrent_stats", timeout=10).json()
    assert stats, "the router's /concurrent_stats is empty"
    for c in (router, worker):
        status = podman("exec", c.name, "cat", "/proc/1/status").stdout
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["Uid"].split()[0] == str(UID), f"{c.name} runs as uid {fields['Uid']}"
        assert int(fields["CapEff"], 16) == 0, f"{c.name} holds capabilities {fields['CapEff']}"
        assert fields["NoNewPrivs"].strip() == "1"
        write = podman("exec", c.name, "touch", "/opt/venv/x", check=False)
        assert write.returncode != 0 and "Read-only file system" in write.stderr


def test_health_checks_follow_the_port_each_container_was_given(router: Container, worker: Container) -> None:
    for c in (router, worker):
        assert c.port != 9880
        check = podman("healthcheck", "run", c.name, check=False)
        assert check.returncode == 0, f"{c.name} reported unhealthy: {check.stdout} {check.stderr}"
        url = podman("exec", c.name, "tts-cluster", "healthcheck", "--print-url").stdout.strip()
        assert url == f"http://127.0.0.1:{c.port}/healthz"


def test_a_health_check_fails_where_nothing_serves(built: Built) -> None:
    # PID 1 is the health check itself: no server to ask, so unhealthy (exit 1), saying why.
    alone = podman("run", "--rm", *RESTRICTED, ROUTER_IMAGE, "healthcheck", check=False)
    assert alone.returncode == 1 and "runs no tts-cluster" in alone.stderr
    # A router whose workers never answer still serves /healthz; a stopped one does not.
    port = free_port()
    name = f"ttsc-test-{uuid.uuid4().hex[:8]}"
    try:
        podman("run", "--detach", "--name", name, *RESTRICTED, ROUTER_IMAGE, "router", "--bind-addr", "127.0.0.1",
               "--port", str(port), "--worker", "http://127.0.0.1:9")
        eventually(lambda: podman("healthcheck", "run", name, check=False).returncode == 0, timeout=60)
        podman("kill", "--signal", "STOP", name)
        stopped = podman("healthcheck", "run", name, check=False, timeout=60)
        assert stopped.returncode != 0, "a frozen router reported healthy"
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


def test_sigterm_lets_an_in_flight_request_finish(built: Built, containers: list[str]) -> None:
    port = free_port()
    c = start(containers, WORKER_IMAGE, ["worker", "--bind-addr", "127.0.0.1", "--port", str(port),
                                         "--voice-dir", "/var/lib/tts-cluster/voices", "--num-warmup", "0",
                                         "--drain-timeout", "30", "--max-text-length", "4000"], port)
    ready(c, timeout=180)
    text = " ".join(["The quick brown fox jumps over the lazy dog, again and again."] * 40)
    answer: dict[str, object] = {}

    def call() -> None:
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/tts", timeout=120,
                           json={**API_V2, "text": text})
            answer["status"], answer["body"] = r.status_code, r.content
        except httpx.HTTPError as exc:
            answer["error"] = repr(exc)

    t = threading.Thread(target=call)
    t.start()
    eventually(lambda: httpx.get(f"http://127.0.0.1:{port}/stats", timeout=2).json().get("in_flight", 0) >= 1
               or "status" in answer, timeout=30, ignore=(httpx.HTTPError,))
    sent = time.monotonic()
    podman("kill", "--signal", "TERM", c.name)
    assert "status" not in answer, "the request ended before SIGTERM: the test proves nothing (make the text longer)"
    t.join(timeout=120)
    exit_code = podman("wait", c.name, timeout=60).stdout.strip()
    took = time.monotonic() - sent
    assert answer.get("status") == 200, f"in-flight request lost on SIGTERM: {answer.get('error')}\n{c.logs()[-3000:]}"
    audio, rate = sf.read(io.BytesIO(answer["body"]))  # type: ignore[arg-type]
    assert len(audio) / rate > 5, f"a {len(audio) / rate:.1f} s answer for a long text: cut short"
    assert exit_code == "0", f"the worker exited {exit_code} after SIGTERM:\n{c.logs()[-3000:]}"
    assert took < 30 + 15, f"the worker took {took:.0f} s to exit: past the pod's grace period"


def test_the_router_image_holds_no_worker_dependencies_and_says_so(built: Built) -> None:
    found = podman("run", "--rm", *RESTRICTED, "--entrypoint", "python3", ROUTER_IMAGE, "-c",
                   "import importlib.util as u; print([m for m in ('torch', 'av', 'numpy', 'soundfile', 'kubernetes',"
                   " 'piper') if u.find_spec(m)])").stdout.strip()
    assert found == "[]", f"the router image holds {found}"
    worker = podman("run", "--rm", *RESTRICTED, ROUTER_IMAGE, "worker", check=False)
    assert worker.returncode == 2 and "needs the `worker` extra" in worker.stderr, worker.stderr[-2000:]
