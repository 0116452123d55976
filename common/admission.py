"""Which client connections a server keeps when a new one arrives and it is full: the bookkeeping, without sockets.

A connection is *busy* from the moment its request's headers are complete until its answer is complete: only busy
connections are what the server must hold. The others can be let go, in this order: a *fresh* one (it has not
sent a byte), one still *reading* its request's line and headers, and an *idle* one kept alive after an answer
(last: its client has shown it is real and may be sending its next request on it right now, which a close would
break). So at the connection limit a new connection does not get a 503 while idle or half-sent connections fill
the table (3,000 idle sockets refused every real request, issue 30): the oldest connection of the first class that
has one is closed for it; only when every connection is busy is the new one refused.

A fresh connection younger than `fresh_grace` seconds is not yet known to be silent: a real client sends its
request as soon as it connects, but on a loaded server its first bytes may not have been read yet. So the order is:
fresh ones past the grace (silent: a flood's), then half-sent ones, then young fresh ones *newest first*, then idle
ones. Newest first, because during a burst of connections the newest are the burst's, and a real client's that
came just before it is spared; idle ones last, because a burst that found no half-sent victim must not close the
keep-alive connections of real clients (the chaos suite's slow-header flood broke requests both ways: issue 30).

Each peer address may hold at most `max_per_peer` connections, and at that cap a new connection of its own
displaces its own oldest idle or reading one, never another peer's: one client flooding the server pushes out its
own sockets, not other clients' keep-alive connections.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable
from enum import Enum
from typing import Generic, Optional, TypeVar

C = TypeVar("C", bound=Hashable)


class State(Enum):
    FRESH = "fresh"  # opened, not a byte sent: evicted first
    READING = "reading"  # a request's line and headers are arriving: evicted when none is fresh
    IDLE = "idle"  # kept alive after an answer: evicted last
    BUSY = "busy"  # a complete request being answered: never evicted


EVICTION_ORDER = (State.FRESH, State.READING, State.IDLE)


class Verdict(Enum):
    ADMIT = "admit"
    REFUSE = "refuse"


class Admission(Generic[C]):
    """Counts admitted connections, by peer and by state; `admit` says which existing ones must go for a new one."""

    def __init__(self, max_connections: int, max_per_peer: int, fresh_grace: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.fresh_grace = fresh_grace
        self._clock = clock
        self._opened: dict[C, float] = {}  # when each fresh connection was admitted
        self._peer: dict[C, str] = {}
        self._state: dict[C, State] = {}
        self._per_peer: Counter[str] = Counter()
        # Evictable connections, per state in the order they entered it: dicts keep insertion order.
        self._evictable: dict[State, dict[C, None]] = {state: {} for state in EVICTION_ORDER}
        self._peer_evictable: dict[str, dict[State, dict[C, None]]] = {}

    def __len__(self) -> int:
        return len(self._state)

    def count(self, state: State) -> int:
        return sum(1 for s in self._state.values() if s is state)

    def peer_count(self, peer: str) -> int:
        return self._per_peer[peer]

    def admit(self, conn: C, peer: str) -> tuple[Verdict, list[tuple[C, State]]]:
        """Whether `conn` (just opened by `peer`) is admitted, and the connections to close to make room for it,
        with the state each was in (already forgotten here). A refused one is not counted."""
        evict: list[tuple[C, State]] = []
        if self._per_peer[peer] >= self.max_per_peer:
            victim = self._victim(self._peer_evictable.get(peer))
            if victim is None:
                return Verdict.REFUSE, []
            evict.append((victim, self.forget(victim)))
        if len(self._state) >= self.max_connections:
            victim = self._victim(self._evictable)
            if victim is None:
                return Verdict.REFUSE, evict  # the peer's own victim stays evicted: it was over its own cap
            evict.append((victim, self.forget(victim)))
        self._peer[conn] = peer
        self._per_peer[peer] += 1
        self._state[conn] = State.BUSY  # placed in the fresh queue by `set_state` below
        self.set_state(conn, State.FRESH)
        self._opened[conn] = self._clock()
        return Verdict.ADMIT, evict

    def set_state(self, conn: C, state: State) -> None:
        """`conn` began reading a request, has a complete one to answer, or is kept alive after its answer
        (unknown: ignored)."""
        old = self._state.get(conn)
        if old is None:
            return
        peer = self._peer[conn]
        queues = self._peer_evictable.setdefault(peer, {state: {} for state in EVICTION_ORDER})
        if old is not State.BUSY:
            self._evictable[old].pop(conn, None)
            queues[old].pop(conn, None)
        if old is State.FRESH:
            self._opened.pop(conn, None)
        self._state[conn] = state
        if state is not State.BUSY:
            self._evictable[state][conn] = None
            queues[state][conn] = None

    def state(self, conn: C) -> Optional[State]:
        return self._state.get(conn)

    def forget(self, conn: C) -> State:
        """`conn` closed, or was chosen to be: it no longer counts. Returns the state it was in (BUSY if unknown)."""
        state = self._state.pop(conn, None)
        if state is None:
            return State.BUSY
        peer = self._peer.pop(conn)
        self._opened.pop(conn, None)
        self._per_peer[peer] -= 1
        queues = self._peer_evictable.get(peer)
        if state is not State.BUSY:
            self._evictable[state].pop(conn, None)
            if queues is not None:
                queues[state].pop(conn, None)
        if self._per_peer[peer] <= 0:  # bounded by the peers connected now, not by every peer ever seen
            del self._per_peer[peer]
            self._peer_evictable.pop(peer, None)
        return state

    def _victim(self, queues: Optional[dict[State, dict[C, None]]]) -> Optional[C]:
        """Fresh past the grace (oldest first), half-sent (oldest first), fresh within the grace (newest first),
        idle (oldest first); None when every connection is busy."""
        if queues is None:
            return None
        fresh = queues[State.FRESH]
        oldest = next(iter(fresh), None)
        if oldest is not None and self._clock() - self._opened.get(oldest, 0.0) >= self.fresh_grace:
            return oldest
        reading = next(iter(queues[State.READING]), None)
        if reading is not None:
            return reading
        newest = next(reversed(fresh), None)  # fresh ones all within the grace, if any
        if newest is not None:
            return newest
        return next(iter(queues[State.IDLE]), None)
