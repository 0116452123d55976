"""A YAML file that users edit or Kubernetes mounts (a ConfigMap, a Secret): read with a size bound, and re-read
when it changes, keeping the last good contents in force when a change does not load."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Optional, TypeVar

import yaml

T = TypeVar("T")


class FileProblem(ValueError):
    """A file that cannot be read or parsed; the message names the file (and the line, for YAML)."""


def read_yaml(path: Path, max_bytes: int) -> Any:
    try:
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise FileProblem(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise FileProblem(f"{path}: larger than {max_bytes} bytes")
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise FileProblem(f"{path}: not YAML{where}: {getattr(exc, 'problem', None) or exc}") from None


class WatchedFile(Generic[T]):
    """`value` is what `load` made of the file; `refresh` re-reads it when its mtime or size changed. A change that
    does not load leaves the last good value in force and is reported in `error` until the file is fixed. At start a
    bad file is the caller's error (`load` raises). Owned by one process; not shared between threads."""

    def __init__(self, path: Path, load: Callable[[Path], T]) -> None:
        self.path = path
        self._load = load
        self.value = load(path)
        self.error: Optional[str] = None
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when a new value took effect."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.value = self._load(self.path)
        except ValueError as exc:
            self.error = str(exc)
            return False
        self.error = None
        return True
