"""Test tiers: every test carries exactly one of the tier markers below, and the `unit` tier is held to its word.

- `unit`: in-process only. While a unit test (and its fixtures) runs, starting a process or connecting a socket
  raises, so a test that needs either cannot stay in the tier by mistake. `make unit` runs this tier alone.
- `process`: real worker, router or `tts-cluster up` processes (or other programs: nginx, Prometheus) on loopback.
- `kube`: the control plane: the API-server emulator, the operator, Helm, kubectl, the e2e suite.
- `images`: container images built with buildah and run with podman.
- `browser`: a real headless Chromium.
`slow` may be added to any of them: a test that takes tens of seconds on its own (`-m "not slow"` skips them).

With TTSC_TIER_PROBE=FILE, nothing is refused: each test's processes, socket connections and duration are written to
FILE as JSON, which is how the markers were first assigned (and how a drifted one is found).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest

TIERS = {
    "unit": "in-process only: no subprocess, no socket connection (make unit)",
    "process": "real worker/router/up processes or other programs on loopback",
    "kube": "the Kubernetes control plane: API-server emulator, operator, Helm, kubectl, e2e",
    "images": "container images built with buildah and run with podman",
    "browser": "a real headless Chromium",
}
SLOW = "slow: tens of seconds or more on its own"


class UnitTierViolation(RuntimeError):
    pass


class _Watch:
    """Patches the two ways out of a process (spawning, connecting) for the test that is running now."""

    def __init__(self, probe_file: str | None) -> None:
        self.probe_file = probe_file
        self.current: str | None = None
        self.refuse = False
        self.seen: dict[str, dict[str, Any]] = {}
        self._undo: list[Callable[[], None]] = []

    def _note(self, what: str, detail: str) -> None:
        if self.current is None:
            return
        if self.refuse:
            raise UnitTierViolation(f"a unit-tier test {what} ({detail}): mark it process, kube, images or browser")
        if self.probe_file:
            entry = self.seen.setdefault(self.current, {"spawned": [], "connected": []})
            if len(entry[what]) < 5:
                entry[what].append(detail)

    def install(self) -> None:
        watch = self
        popen_init = subprocess.Popen.__init__
        connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

        def checked_popen_init(self: subprocess.Popen[Any], args: Any, *a: Any, **kw: Any) -> None:
            watch._note("spawned", str(args if isinstance(args, str) else list(args)[:3]))
            popen_init(self, args, *a, **kw)

        def checked_connect(self: socket.socket, address: Any) -> None:
            if self.family != socket.AF_UNIX:
                watch._note("connected", str(address))
            connect(self, address)

        def checked_connect_ex(self: socket.socket, address: Any) -> int:
            if self.family != socket.AF_UNIX:
                watch._note("connected", str(address))
            return connect_ex(self, address)

        subprocess.Popen.__init__ = checked_popen_init  # type: ignore[method-assign]
        socket.socket.connect = checked_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = checked_connect_ex  # type: ignore[method-assign]

        def undo() -> None:
            subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]
            socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]

        self._undo.append(undo)

    def uninstall(self) -> None:
        for undo in self._undo:
            undo()


_WATCH_KEY = pytest.StashKey[_Watch]()


def pytest_configure(config: pytest.Config) -> None:
    for name, text in TIERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.addinivalue_line("markers", SLOW)
    watch = _Watch(os.environ.get("TTSC_TIER_PROBE"))
    watch.install()
    config.stash[_WATCH_KEY] = watch


def pytest_unconfigure(config: pytest.Config) -> None:
    watch = config.stash.get(_WATCH_KEY, None)
    if watch is None:
        return
    watch.uninstall()
    if watch.probe_file:
        with open(watch.probe_file, "w", encoding="utf-8") as out:
            json.dump(watch.seen, out, indent=1, sort_keys=True)


def tier_of(item: pytest.Item) -> list[str]:
    return [name for name in TIERS if item.get_closest_marker(name) is not None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash[_WATCH_KEY].probe_file:
        return
    wrong = [f"{item.nodeid}: {tiers or 'none'}" for item in items if len(tiers := tier_of(item)) != 1]
    if wrong:
        raise pytest.UsageError("every test needs exactly one tier marker (tests/support/tiers.py):\n  "
                                + "\n  ".join(wrong[:20]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    watch = item.config.stash[_WATCH_KEY]
    watch.current = item.nodeid
    start = time.monotonic()
    try:
        yield
    finally:
        if watch.probe_file:
            watch.seen.setdefault(item.nodeid, {"spawned": [], "connected": []})["seconds"] = round(
                time.monotonic() - start, 2)
        watch.current = None


def _refusing(item: pytest.Item) -> Generator[None, None, None]:
    """Refuse during a unit test's own setup and call: not its teardown, where fixtures of wider scope that other
    tiers' tests started may be stopped after the session's last test."""
    watch = item.config.stash[_WATCH_KEY]
    watch.refuse = not watch.probe_file and tier_of(item) == ["unit"]
    try:
        yield
    finally:
        watch.refuse = False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield from _refusing(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield from _refusing(item)
