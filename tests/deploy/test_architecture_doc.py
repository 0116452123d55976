"""docs/architecture.md names the functions that handle each step of a request's path; each name must resolve to
real code, so the page cannot drift from it unnoticed."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest

from support.paths import ROOT

PAGE = ROOT / "docs" / "architecture.md"
NAME = re.compile(r"\btts_(?:common|worker|router|operator|cli|bench)(?:\.[A-Za-z_][A-Za-z0-9_]*)+")

pytestmark = pytest.mark.unit


def resolve(dotted: str) -> Any:
    """The object a dotted name means: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_name_on_the_page_is_real_code() -> None:
    names = sorted(set(NAME.findall(PAGE.read_text(encoding="utf-8"))))
    assert len(names) > 30, "the page names too few functions to show a request's path"
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{name}: {exc}")
    assert missing == []


def test_a_stale_name_is_caught() -> None:
    with pytest.raises(AttributeError):
        resolve("tts_router.proxy.Forwarder.no_such_method")
    with pytest.raises(AttributeError):
        resolve("tts_router.no_such_module.f")
