"""Reading a worker pod's state: ready, failed (and why), draining, its /stats load."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Optional

import httpx

from .resources import ANNOTATION_DRAIN_STARTED, LABEL_DRAINING


def _parse_time(value: Any) -> Optional[datetime.datetime]:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if isinstance(value, str) and value:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def name_of(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["name"])


def is_terminating(pod: dict[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_draining(pod: dict[str, Any]) -> bool:
    return (pod["metadata"].get("labels") or {}).get(LABEL_DRAINING) == "true"


def drain_started(pod: dict[str, Any]) -> Optional[datetime.datetime]:
    return _parse_time((pod["metadata"].get("annotations") or {}).get(ANNOTATION_DRAIN_STARTED))


def is_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def unschedulable(pod: dict[str, Any]) -> Optional[str]:
    """The scheduler's message while the pod waits for a node that fits it (say, no free GPU), else None."""
    status = pod.get("status") or {}
    if status.get("phase") not in (None, "Pending"):
        return None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                and cond.get("reason") == "Unschedulable":
            return str(cond.get("message") or "Unschedulable")
    return None


def failure(pod: dict[str, Any], crashloop_restarts: int, not_ready_seconds: float,
            at: Optional[datetime.datetime] = None) -> Optional[str]:
    """Why this worker must be replaced, or None. Each reason becomes the Event's reason. `at`: now."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase == "Failed":
        return "PodFailed"
    if phase == "Unknown" or status.get("reason") == "NodeLost":
        return "NodeLost"
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff" and int(cs.get("restartCount") or 0) >= crashloop_restarts:
            return "CrashLoopBackOff"
    if unschedulable(pod) is not None:
        return None  # waiting for room on a node: a replacement would wait the same way
    if not is_ready(pod):
        since = _parse_time(pod["metadata"].get("creationTimestamp"))
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("lastTransitionTime"):
                since = _parse_time(cond["lastTransitionTime"])
        if since is not None and ((at or now()) - since).total_seconds() > not_ready_seconds:
            return "NotReady"
    return None


def stats_url(pod: dict[str, Any], port: int) -> Optional[str]:
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/stats"


def read_stats(pod: dict[str, Any], port: int, client: httpx.Client) -> Optional[dict[str, Any]]:
    """The worker's /stats document; None when it cannot be asked (no address yet, down, not JSON)."""
    url = stats_url(pod, port)
    if url is None:
        return None
    try:
        body = client.get(url, timeout=1.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def admitted(stats: Optional[Mapping[str, Any]]) -> Optional[int]:
    """Requests the worker holds (waiting + running), from its /stats; None when it could not be asked."""
    if stats is None:
        return None
    try:
        return int(stats["queue_depth"]) + int(stats["in_flight"])
    except (KeyError, TypeError, ValueError):
        return None
