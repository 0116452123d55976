"""The worker set's next step, as a pure function: what exists and what is wanted in, the actions out.

`plan` decides; `Reconciler._apply_workers` talks to the API server. Nothing here reads a clock, a socket or the
API: the caller passes the pods it listed, the loads it read from the workers' /stats, and the time, so every
decision (replace, take back from draining, create, drain, remove) is tested in-process, table-driven.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from . import pods


@dataclass(frozen=True)
class Replace:
    """Delete a failed worker; a new one is created in the same plan."""

    pod: str
    reason: str


@dataclass(frozen=True)
class Undrain:
    """Take a draining worker back (it is warm) instead of creating a new one."""

    pod: str


@dataclass(frozen=True)
class Create:
    """One new worker pod; `ordinal` counts active workers after it is made (for the Event)."""

    ordinal: int


@dataclass(frozen=True)
class Drain:
    """Mark a worker draining: the router stops sending to it; it goes when empty."""

    pod: str
    held: int


@dataclass(frozen=True)
class Remove:
    """Delete a drained worker (or one whose drain timed out)."""

    pod: str
    why: str


Action = Union[Replace, Undrain, Create, Drain, Remove]


@dataclass(frozen=True)
class Rules:
    crashloop_restarts: int
    not_ready_seconds: float
    drain_timeout_seconds: float


@dataclass(frozen=True)
class WorkerPlan:
    actions: tuple[Action, ...]
    active: int  # workers serving or about to, created ones included
    ready: int  # of those, ready now
    draining: int  # still draining after the plan


@dataclass
class _Sets:
    alive: list[dict[str, Any]] = field(default_factory=list)
    replace: list[Replace] = field(default_factory=list)

    @property
    def active(self) -> list[dict[str, Any]]:
        return [p for p in self.alive if not pods.is_draining(p)]

    @property
    def draining(self) -> list[dict[str, Any]]:
        return [p for p in self.alive if pods.is_draining(p)]


def _split(worker_pods: list[dict[str, Any]], rules: Rules, now: datetime.datetime) -> _Sets:
    sets = _Sets()
    for pod in worker_pods:
        if pods.is_terminating(pod):
            continue
        reason = pods.failure(pod, rules.crashloop_restarts, rules.not_ready_seconds, now)
        if reason:
            sets.replace.append(Replace(pods.name_of(pod), reason))
        else:
            sets.alive.append(pod)
    return sets


def loads_needed(desired: int, worker_pods: list[dict[str, Any]], rules: Rules, now: datetime.datetime) -> list[str]:
    """The pods whose /stats `plan` will read: every draining one, and the active ones when there are too many."""
    sets = _split(worker_pods, rules, now)
    active, draining = sets.active, sets.draining
    names = [pods.name_of(p) for p in draining]
    if len(active) > desired:  # too few would take workers back from draining instead: loads matter only here
        names += [pods.name_of(p) for p in active]
    return names


def plan(desired: int, worker_pods: list[dict[str, Any]], loads: Mapping[str, Optional[int]], rules: Rules,
         now: datetime.datetime) -> WorkerPlan:
    """One step toward `desired` workers. `loads`: requests each pod holds, by name (None: could not be asked)."""
    sets = _split(worker_pods, rules, now)
    actions: list[Action] = list(sets.replace)
    active, draining = sets.active, sets.draining

    # Scale up: take back a draining worker first (it is warm), then create new ones.
    ready = sum(1 for p in active if pods.is_ready(p))
    while len(active) < desired and draining:
        pod = draining.pop()
        actions.append(Undrain(pods.name_of(pod)))
        active.append(pod)
        ready += pods.is_ready(pod)
    count = len(active)
    for _ in range(max(0, desired - count)):
        count += 1
        actions.append(Create(count))

    # Scale down with drain: not ready or unreachable workers hold no requests and go first, then the least loaded.
    extra = count - desired
    if extra > 0:
        order = sorted(active, key=lambda p: (pods.is_ready(p), loads.get(pods.name_of(p)) or 0))
        for pod in order[:extra]:
            actions.append(Drain(pods.name_of(pod), loads.get(pods.name_of(pod)) or 0))
            count -= 1
            ready -= pods.is_ready(pod)
            draining.append(pod)
    still = 0
    for pod in draining:
        held = loads.get(pods.name_of(pod))
        waited = (now - (pods.drain_started(pod) or now)).total_seconds()
        if not held or waited >= rules.drain_timeout_seconds:
            why = "drained" if not held else f"drain timeout after {waited:.0f} s with {held} requests"
            actions.append(Remove(pods.name_of(pod), why))
        else:
            still += 1
    return WorkerPlan(tuple(actions), active=count, ready=ready, draining=still)


def serving_after(worker_pods: list[dict[str, Any]], actions: tuple[Action, ...]) -> list[str]:
    """The workers that serve (or are starting to) once `actions` are carried out, pods still to be created
    aside: what the voices' placement spreads over. Draining, replaced and removed workers hold no pins."""
    names = {pods.name_of(p) for p in worker_pods if not pods.is_terminating(p) and not pods.is_draining(p)}
    for action in actions:
        if isinstance(action, Undrain):
            names.add(action.pod)
        elif isinstance(action, (Replace, Drain, Remove)):
            names.discard(action.pod)
    return sorted(names)
