"""The seed's cluster modes, decided in one place for the router's /concurrent_stats and the TTSCluster status."""

from __future__ import annotations

from typing import Literal

ClusterMode = Literal["concurrent", "single", "unavailable"]


def mode_for(serving: int) -> ClusterMode:
    """concurrent with 2+ serving workers; single (the seed's fallback) with one; unavailable with none."""
    return "concurrent" if serving >= 2 else "single" if serving == 1 else "unavailable"
