"""Client-supplied paths (reference audio, weights), confined to their configured directory."""

from __future__ import annotations

from pathlib import Path

from tts_common.voices import Voice


class PathRejected(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


class PathMissing(PathRejected):
    """Inside the directory, but no such file: what api_v2's pipeline skips for an aux clip."""


def resolve_inside(root_dir: Path, raw: str, field: str, where: str) -> Path:
    """Resolve `raw` inside `root_dir`, following symlinks, or raise PathRejected naming the field.

    Relative paths are taken from the directory; an absolute path is allowed only when it lies inside it. `..`,
    NUL bytes and symlinks that lead outside are refused, and the file must exist. Every OS error (a name too long,
    a symlink loop, no permission) is the caller's 400, never a 500.
    """
    if "\x00" in raw:
        raise PathRejected(field, "path contains a NUL byte")
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    try:
        root = root_dir.resolve()
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = root / candidate
        resolved = candidate.resolve(strict=False)
        if resolved != root and not resolved.is_relative_to(root):
            raise PathRejected(field, f"{shown!r} is outside the {where}")
        if not resolved.is_file():
            raise PathMissing(field, f"{shown!r} not found in the {where}")
    except (OSError, RuntimeError) as exc:  # symlink loops, names too long
        raise PathRejected(field, f"cannot resolve {shown!r}: {getattr(exc, 'strerror', None) or exc}") from exc
    return resolved


def resolve_voice_path(voice_dir: Path, raw: str, field: str) -> Path:
    return resolve_inside(voice_dir, raw, field, "voice directory")


def missing_files(voice: Voice, engine: str, models_dir: Path, voice_dir: Path) -> list[str]:
    """What `voice` names for `engine` that is not there (or lies outside its directory), each as "field: why" (the
    words a load of it would fail with): checked when a catalog takes effect, so a bad entry is named before any
    request."""
    wanted: list[tuple[Path, str, str]] = []
    if engine == "gpt-sovits" and voice.gpt_sovits is not None:
        g = voice.gpt_sovits
        wanted += [(models_dir, g.gpt_weights, "gpt_sovits.gpt_weights"),
                   (models_dir, g.sovits_weights, "gpt_sovits.sovits_weights"),
                   (voice_dir, g.ref_audio, "gpt_sovits.ref_audio")]
        wanted += [(voice_dir, a, f"gpt_sovits.aux_ref_audio[{i}]") for i, a in enumerate(g.aux_ref_audio)]
    elif engine == "piper" and voice.piper is not None:
        wanted += [(models_dir, voice.piper.model, "piper.model"),
                   (models_dir, voice.piper.model + ".json", "piper.model (its .json)")]
    elif engine == "synthetic" and voice.synthetic is not None and voice.synthetic.weights is not None:
        wanted.append((models_dir, voice.synthetic.weights, "synthetic.weights"))
    problems = []
    for root, raw, field in wanted:
        where = "models directory" if root == models_dir else "voice directory"
        try:
            resolve_inside(root, raw, field, where)
        except PathRejected as exc:
            problems.append(str(exc))
    return problems
