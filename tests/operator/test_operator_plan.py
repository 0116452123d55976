"""The operator's worker plan, in-process and table-driven: pods and loads in, actions out, no API server."""

from __future__ import annotations

import datetime
from typing import Any, Optional

import pytest

from tts_operator.plan import Create, Drain, Remove, Replace, Rules, Undrain, loads_needed, plan
from tts_operator.resources import ANNOTATION_DRAIN_STARTED, LABEL_DRAINING

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)
RULES = Rules(crashloop_restarts=5, not_ready_seconds=900, drain_timeout_seconds=60)


def stamp(seconds_ago: float) -> str:
    return (NOW - datetime.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, ready: bool = True, draining_for: Optional[float] = None, phase: str = "Running",
        not_ready_for: float = 0, restarts: int = 0, crashloop: bool = False, terminating: bool = False) -> dict:
    metadata: dict[str, Any] = {"name": name, "creationTimestamp": stamp(3600), "labels": {}, "annotations": {}}
    if draining_for is not None:
        metadata["labels"][LABEL_DRAINING] = "true"
        metadata["annotations"][ANNOTATION_DRAIN_STARTED] = stamp(draining_for)
    if terminating:
        metadata["deletionTimestamp"] = stamp(1)
    state = {"waiting": {"reason": "CrashLoopBackOff"}} if crashloop else {"running": {}}
    return {
        "metadata": metadata,
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "lastTransitionTime": stamp(not_ready_for if not ready else 3600)}],
            "containerStatuses": [{"restartCount": restarts, "state": state}],
        },
    }


CASES = [
    # (what, desired, pods, loads, actions, (active, ready, draining))
    ("nothing to do", 2, [pod("a"), pod("b")], {}, [], (2, 2, 0)),
    ("scale up from nothing", 2, [], {}, [Create(1), Create(2)], (2, 0, 0)),
    ("scale up by one", 3, [pod("a"), pod("b")], {}, [Create(3)], (3, 2, 0)),
    ("scale down drains the least loaded", 1, [pod("a"), pod("b")], {"a": 4, "b": 1},
     [Drain("b", 1)], (1, 1, 1)),
    ("an idle worker marked draining goes at once", 1, [pod("a"), pod("b")], {"a": 4, "b": 0},
     [Drain("b", 0), Remove("b", "drained")], (1, 1, 0)),
    ("a not-ready worker is drained before a loaded one", 1, [pod("a"), pod("b", ready=False)], {"a": 0, "b": 0},
     [Drain("b", 0), Remove("b", "drained")], (1, 1, 0)),
    ("a draining worker holding requests stays", 1, [pod("a"), pod("b", draining_for=10)], {"b": 2},
     [], (1, 1, 1)),
    ("drain timeout", 1, [pod("a"), pod("b", draining_for=61)], {"b": 2},
     [Remove("b", "drain timeout after 61 s with 2 requests")], (1, 1, 0)),
    ("a drained worker goes", 1, [pod("a"), pod("b", draining_for=5)], {"b": 0}, [Remove("b", "drained")],
     (1, 1, 0)),
    ("unreachable while draining counts as drained", 1, [pod("a"), pod("b", draining_for=5)], {"b": None},
     [Remove("b", "drained")], (1, 1, 0)),
    ("a draining worker is taken back before creating", 2, [pod("a"), pod("b", draining_for=5)], {"b": 3},
     [Undrain("b")], (2, 2, 0)),
    ("a failed pod is replaced", 2, [pod("a"), pod("b", phase="Failed")], {},
     [Replace("b", "PodFailed"), Create(2)], (2, 1, 0)),
    ("crash looping past the limit is replaced", 1, [pod("a", ready=False, restarts=5, crashloop=True)], {},
     [Replace("a", "CrashLoopBackOff"), Create(1)], (1, 0, 0)),
    ("crash looping below the limit waits", 1, [pod("a", ready=False, restarts=2, crashloop=True)], {},
     [], (1, 0, 0)),
    ("never ready for too long is replaced", 1, [pod("a", ready=False, not_ready_for=901)], {},
     [Replace("a", "NotReady"), Create(1)], (1, 0, 0)),
    ("a lost node's pod is replaced", 1, [pod("a", phase="Unknown")], {}, [Replace("a", "NodeLost"), Create(1)],
     (1, 0, 0)),
    ("terminating pods are not counted", 2, [pod("a"), pod("b", terminating=True)], {}, [Create(2)], (2, 1, 0)),
    ("scale to zero drains everything", 0, [pod("a"), pod("b")], {"a": 1, "b": 0},
     [Drain("b", 0), Drain("a", 1), Remove("b", "drained")], (0, 0, 1)),
]


@pytest.mark.parametrize("what,desired,pods,loads,actions,counts", CASES, ids=[c[0] for c in CASES])
def test_plan(what, desired, pods, loads, actions, counts):
    step = plan(desired, pods, loads, RULES, NOW)
    assert list(step.actions) == actions
    assert (step.active, step.ready, step.draining) == counts


def test_loads_are_read_only_where_the_plan_needs_them():
    assert loads_needed(2, [pod("a"), pod("b")], RULES, NOW) == []
    assert loads_needed(1, [pod("a"), pod("b")], RULES, NOW) == ["a", "b"]
    assert loads_needed(2, [pod("a"), pod("b", draining_for=1)], RULES, NOW) == ["b"]


def test_the_plan_is_pure():
    pods = [pod("a"), pod("b", draining_for=61)]
    before = repr(pods)
    assert plan(1, pods, {"b": 2}, RULES, NOW) == plan(1, pods, {"b": 2}, RULES, NOW)
    assert repr(pods) == before
