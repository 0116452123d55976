"""Client-supplied reference audio paths, confined to the configured voice directory."""

from __future__ import annotations

from pathlib import Path


class PathRejected(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


def resolve_voice_path(voice_dir: Path, raw: str, field: str) -> Path:
    """Resolve `raw` inside `voice_dir`, following symlinks, or raise PathRejected naming the field.

    Relative paths are taken from the voice directory; an absolute path is allowed only when it lies inside it.
    `..`, NUL bytes and symlinks that lead outside are refused, and the file must exist.
    """
    if "\x00" in raw:
        raise PathRejected(field, "path contains a NUL byte")
    root = voice_dir.resolve()
    candidate = Path(raw)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        resolved = candidate.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # symlink loops, names too long
        raise PathRejected(field, f"cannot resolve {raw!r}: {exc}") from exc
    if resolved != root and not resolved.is_relative_to(root):
        raise PathRejected(field, f"{raw!r} is outside the voice directory")
    if not resolved.is_file():
        raise PathRejected(field, f"{raw!r} not found in the voice directory")
    return resolved
