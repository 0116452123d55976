"""Where the benchmarks find the repository's checkout, and where their results go.

The weight generator and the operator's test harness live in the checkout's tests/, not in the package. An editable
install runs from the checkout itself; a project installed into site-packages finds it from the working directory
(the checkout's root or a folder in it). Results never go inside an installation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def roots() -> list[Path]:
    """Where a checkout may be, in order: the one this package runs from, then the working directory and above."""
    cwd = Path.cwd().resolve()
    return [PACKAGE_ROOT, cwd, *cwd.parents]


def find(relative: Path, where: Optional[list[Path]] = None) -> Optional[Path]:
    """`relative` (a checkout's file) in the first of `where` (default `roots()`) that holds it."""
    for root in roots() if where is None else where:
        if (root / relative).is_file():
            return root / relative
    return None


def results_dir() -> Path:
    """The default for --out: bench/results in the checkout this package runs from, else in the working directory."""
    if (PACKAGE_ROOT / "pyproject.toml").is_file():
        return PACKAGE_ROOT / "bench" / "results"
    return Path.cwd() / "bench" / "results"
