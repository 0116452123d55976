"""The cluster's default voice, persisted in the resource: a weight switch made through a router
(`/set_gpt_weights`, `/set_sovits_weights`) is written into `spec.defaultWeights`, which every router replica is
started with, so all routers agree and a worker that comes later, or a router that restarts, serves the same."""

from __future__ import annotations

from typing import Any, Optional

import httpx

from .spec import DefaultWeightsSpec


def router_default_voice(router_url: str) -> Optional[dict[str, Any]]:
    """The router's `default_voice` from /concurrent_stats; None if unset or unreadable."""
    try:
        body = httpx.get(f"{router_url}/concurrent_stats", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    voice = body.get("default_voice") if isinstance(body, dict) else None
    return voice if isinstance(voice, dict) else None


def to_persist(current: DefaultWeightsSpec, reported: Optional[dict[str, Any]]) -> Optional[dict[str, str]]:
    """The `spec.defaultWeights` to write, or None. Only a choice switched through a router counts: a router
    started from the spec (or one not yet replaced after a switch elsewhere) reports `switched: false`, so it never
    writes an older choice back."""
    if not reported or reported.get("switched") is not True:
        return None
    wanted = {kind: value for kind, value in (("gpt", reported.get("gpt_weights")),
                                              ("sovits", reported.get("sovits_weights")))
              if isinstance(value, str) and value}
    return wanted if wanted and wanted != current.as_dict() else None
