"""The voices an engine holds, least recently used evicted past the limit: filled and touched on the engine
thread only (between syntheses), read by /stats on the event loop, hence the lock.

A voice is held under its name together with the definition it was loaded from: a request carrying another
definition of that name (the catalog changed) loads it anew. Pinned voices (the catalog's placement for this worker)
are never evicted. A load that fails leaves nothing held under that name (never a half-loaded voice) and its error
is kept, naming the file, until a load succeeds or the voice leaves the catalog.
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


class RecentlyFailed(Exception):
    """This voice, as defined now, failed to load moments ago: the same error again, without another load."""


# A voice whose load failed is not tried again for this long (a broken checkpoint would otherwise cost a full load
# per request), unless its definition changes.
FAILED_HOLD_SECONDS = 10.0


class LoadedVoices(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._items: OrderedDict[str, tuple[object, T]] = OrderedDict()
        self._load_seconds: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        self._failed: dict[str, tuple[object, float]] = {}  # name -> (definition, when its load failed)
        self._pinned: tuple[str, ...] = ()
        self._loading: Optional[str] = None
        self._loads = 0
        self._lock = threading.Lock()

    def get(self, name: str, definition: object, load: Callable[[], T],
            evicted: Callable[[T], None] = lambda _state: None, spare: frozenset[str] = frozenset(),
            protect: frozenset[str] = frozenset()) -> T:
        """The voice's engine state, loaded with `load` if not held as `definition`. The least recently used
        unpinned voice is evicted first (sparing those in `spare`, which requests queued here want, while another
        can go; never one in `protect`: NoVoiceSlot instead) and released with `evicted` before the load starts, so
        at most `limit` voices are ever in memory, the one loading included."""
        victims: list[T] = []
        with self._lock:
            held = self._items.get(name)
            if held is not None and held[0] == definition:
                self._items.move_to_end(name)
                return held[1]
            failed = self._failed.get(name)
            if failed is not None and failed[0] == definition and time.monotonic() - failed[1] < FAILED_HOLD_SECONDS:
                raise RecentlyFailed(self._errors.get(name, "failed to load"))
            if held is not None:  # another definition of this name: replaced
                victims.append(self._items.pop(name)[1])
            while len(self._items) >= self.limit:
                evictable = [n for n in self._items if n not in self._pinned and n not in protect]
                victim = next((n for n in evictable if n not in spare), evictable[0] if evictable else None)
                if victim is None:
                    kept = "pinned or protected" if protect else "pinned"
                    raise NoVoiceSlot(f"voice {name!r}: all {self.limit} voice slots hold {kept} voices "
                                      f"({', '.join(self._items)})")
                victims.append(self._items.pop(victim)[1])
            self._loading = name
            held = None
        while victims:  # popped, so the release is the last reference and the memory is free before the load
            evicted(victims.pop())
        t0 = time.monotonic()
        try:
            state = load()  # outside the lock: /stats stays answerable while a voice loads
        except BaseException as exc:
            with self._lock:
                self._loading = None
                self._errors[name] = str(exc) or type(exc).__name__
                self._failed[name] = (definition, time.monotonic())
            raise
        with self._lock:
            self._loading = None
            self._items[name] = (definition, state)
            self._load_seconds[name] = round(time.monotonic() - t0, 4)
            self._errors.pop(name, None)
            self._failed.pop(name, None)
            self._loads += 1
        return state

    def drop(self, names: Iterable[str], evicted: Callable[[T], None] = lambda _state: None) -> list[str]:
        """Forget these voices (removed from the catalog, or changed there); the names actually dropped."""
        wanted = set(names)
        with self._lock:
            dropped = [n for n in self._items if n in wanted]
            victims = [self._items.pop(n)[1] for n in dropped]
        while victims:
            evicted(victims.pop())
        return dropped

    def note_error(self, name: str, message: str) -> None:
        """Report a voice as unloadable before anyone asks for it (a file its catalog entry names is missing)."""
        with self._lock:
            self._errors[name] = message

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the load times and errors of voices not in `keep` (gone from the catalog): what /stats reports stays
        about voices that exist."""
        kept = set(keep)
        with self._lock:
            for table in (self._load_seconds, self._errors, self._failed):
                for name in [n for n in table if n not in kept]:
                    del table[name]

    def peek(self, name: str) -> Optional[T]:
        """The voice's state if held, without touching its place in the LRU order."""
        with self._lock:
            held = self._items.get(name)
        return held[1] if held is not None else None

    def holds(self, name: str, definition: object) -> bool:
        with self._lock:
            held = self._items.get(name)
        return held is not None and held[0] == definition

    def pin(self, names: Iterable[str]) -> None:
        """Keep these voices loaded from now on (they are loaded by whoever calls `get` for them). At most
        `limit - 1`, so one slot always serves the voices nobody pinned here."""
        with self._lock:
            self._pinned = tuple(dict.fromkeys(names))[: max(0, self.limit - 1)]

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

    def expected_load_seconds(self, name: str, definition: object, default: float) -> float:
        """0 if held as `definition`; else its last measured load time, else the mean of all measured ones, else
        `default`."""
        with self._lock:
            held = self._items.get(name)
            if held is not None and held[0] == definition:
                return 0.0
            if name in self._load_seconds:
                return self._load_seconds[name]
            measured = list(self._load_seconds.values())
        return sum(measured) / len(measured) if measured else default
