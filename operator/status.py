"""The TTSCluster's status: counts, mode, endpoint, selector and Ready/Progressing/Degraded conditions."""

from __future__ import annotations

from typing import Any, Optional

from .pods import now


def condition(old: list[dict[str, Any]], kind: str, ok: bool, reason: str, message: str,
              generation: Optional[int]) -> dict[str, Any]:
    """A condition; its lastTransitionTime only moves when its status does (the Kubernetes convention)."""
    status = "True" if ok else "False"
    previous = next((c for c in old if c.get("type") == kind), None)
    changed = previous is None or previous.get("status") != status
    stamp = now().strftime("%Y-%m-%dT%H:%M:%SZ") if previous is None or changed else previous.get("lastTransitionTime")
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": stamp, "observedGeneration": generation}
