"""The voices an engine holds, least recently used evicted past the limit: filled and touched on the engine
thread only (between syntheses), read by /stats on the event loop, hence the lock."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoadedVoices(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._items: OrderedDict[str, T] = OrderedDict()
        self._load_seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, name: str, load: Callable[[], T]) -> T:
        """The voice's engine state, loaded with `load` if not held (evicting the least recently used first, so
        the limit holds while the new one loads)."""
        with self._lock:
            if name in self._items:
                self._items.move_to_end(name)
                return self._items[name]
            while len(self._items) >= self.limit:
                self._items.popitem(last=False)
        t0 = time.monotonic()
        state = load()  # outside the lock: /stats stays answerable while a voice loads
        with self._lock:
            self._items[name] = state
            self._load_seconds[name] = round(time.monotonic() - t0, 4)
        return state

    def names(self) -> list[str]:
        """Held voices, least recently used first."""
        with self._lock:
            return list(self._items)

    def load_seconds(self) -> dict[str, float]:
        """Each voice's last measured load time, held or not."""
        with self._lock:
            return dict(self._load_seconds)
