"""The voices an engine holds, least recently used evicted past the limit: filled and touched on the engine
thread only (between syntheses), read by /stats on the event loop, hence the lock.

Pinned voices (the catalog's placement for this worker) are never evicted. A load that fails leaves nothing held
under that name (never a half-loaded voice) and its error is kept, naming the file, until a load succeeds.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, Optional, TypeVar

T = TypeVar("T")


class NoVoiceSlot(Exception):
    """Every slot holds a pinned voice: this voice cannot be loaded here now."""


class LoadedVoices(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._items: OrderedDict[str, T] = OrderedDict()
        self._load_seconds: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        self._pinned: tuple[str, ...] = ()
        self._loading: Optional[str] = None
        self._loads = 0
        self._lock = threading.Lock()

    def get(self, name: str, load: Callable[[], T], evicted: Callable[[T], None] = lambda _state: None) -> T:
        """The voice's engine state, loaded with `load` if not held (evicting the least recently used unpinned one
        first, so the limit holds while the new one loads; `evicted` releases what it held)."""
        dropped: list[T] = []
        with self._lock:
            if name in self._items:
                self._items.move_to_end(name)
                return self._items[name]
            while len(self._items) >= self.limit:
                victim = next((n for n in self._items if n not in self._pinned), None)
                if victim is None:
                    raise NoVoiceSlot(f"voice {name!r}: all {self.limit} voice slots hold pinned voices "
                                      f"({', '.join(self._items)})")
                dropped.append(self._items.pop(victim))
            self._loading = name
        for state in dropped:
            evicted(state)
        t0 = time.monotonic()
        try:
            state = load()  # outside the lock: /stats stays answerable while a voice loads
        except BaseException as exc:
            with self._lock:
                self._loading = None
                self._errors[name] = str(exc) or type(exc).__name__
            raise
        with self._lock:
            self._loading = None
            self._items[name] = state
            self._load_seconds[name] = round(time.monotonic() - t0, 4)
            self._errors.pop(name, None)
            self._loads += 1
        return state

    def drop(self, names: Iterable[str], evicted: Callable[[T], None] = lambda _state: None) -> list[str]:
        """Forget these voices (removed from the catalog, or changed there); the names actually dropped."""
        with self._lock:
            dropped = [(n, self._items.pop(n)) for n in list(names) if n in self._items]
        for _name, state in dropped:
            evicted(state)
        return [n for n, _ in dropped]

    def peek(self, name: str) -> Optional[T]:
        """The voice's state if held, without touching its place in the LRU order."""
        with self._lock:
            return self._items.get(name)

    def holds(self, name: str) -> bool:
        with self._lock:
            return name in self._items

    def pin(self, names: Iterable[str]) -> None:
        """Keep these voices loaded from now on (they are loaded by whoever calls `get` for them)."""
        with self._lock:
            self._pinned = tuple(dict.fromkeys(names))[: self.limit]

    def pinned(self) -> list[str]:
        with self._lock:
            return list(self._pinned)

    def names(self) -> list[str]:
        """Held voices, least recently used first."""
        with self._lock:
            return list(self._items)

    def loading(self) -> list[str]:
        with self._lock:
            return [self._loading] if self._loading is not None else []

    def load_seconds(self) -> dict[str, float]:
        """Each voice's last measured load time, held or not."""
        with self._lock:
            return dict(self._load_seconds)

    def errors(self) -> dict[str, str]:
        with self._lock:
            return dict(self._errors)

    @property
    def loads(self) -> int:
        with self._lock:
            return self._loads

    def expected_load_seconds(self, name: str, default: float) -> float:
        """0 if held; else its last measured load time, else the mean of all measured ones, else `default`."""
        with self._lock:
            if name in self._items:
                return 0.0
            if name in self._load_seconds:
                return self._load_seconds[name]
            measured = list(self._load_seconds.values())
        return sum(measured) / len(measured) if measured else default
