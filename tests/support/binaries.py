"""Programs from Debian's packages that some tests start (the Makefile installs them): a test without one skips,
naming the program and the package, except in CI, where a missing one is a failure rather than a hidden check."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(program: str, package: str, target: str | None = None) -> str:
    """The program's path; a skip (locally) or a failure (CI=true) when it is missing."""
    path = shutil.which(program)
    if path is None:
        message = f"no {program} on PATH: install Debian's {package} package (`make {target or package}`)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path
