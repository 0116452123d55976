"""Client-supplied paths (reference audio, weights), confined to their configured directory."""

from __future__ import annotations

from pathlib import Path


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
