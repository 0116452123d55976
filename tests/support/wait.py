"""The tests' one way to wait for something that happens in another process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(fn: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
               ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call `fn` until it returns something truthy and return that. An exception of a type in `ignore` counts as
    not yet (a server still starting); after `timeout` seconds the test fails, showing the last value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = fn()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s; last: {last!r}")
        time.sleep(interval)


def stats_when(url: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
    """A worker's /stats once `predicate` holds for it."""
    import httpx

    def holds() -> dict[str, Any] | None:
        stats: dict[str, Any] = httpx.get(f"{url}/stats").json()
        return stats if predicate(stats) else None

    return eventually(holds, timeout)
