"""What the workers say about their voices, turned into `status.voices` and VoiceLoadFailed Events.

Pure apart from `VoiceErrorLog`'s bounded memory (which lives in the TTSCluster's kopf memo): the reconciler
passes the placement it wrote and each worker's /stats, and gets status rows and the errors not yet told.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .placement import Placement, holders, shortfall
from .voices import VoicesSpec

MAX_EVENT_MESSAGE = 1000  # characters of a worker's error kept in an Event


class VoiceReport(BaseModel):
    """The voice fields of a worker's /stats (`tts_common.schemas.WorkerStats`), read alone so that a worker of
    another version, whose other fields differ, still reports its voices."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    loaded_voices: list[str] = Field(default_factory=list)
    pinned_voices: list[str] = Field(default_factory=list)
    voice_errors: dict[str, str] = Field(default_factory=dict)


def voice_report(stats: Optional[Mapping[str, Any]]) -> Optional[VoiceReport]:
    if stats is None:
        return None
    try:
        return VoiceReport.model_validate(stats)
    except ValidationError:
        return None


def placement_from_status(status: Mapping[str, Any]) -> Placement:
    """The placement last written, from status.voices[*].pinnedOn: what keeps pins stable across operator
    restarts (the operator's memory is lost with its process; the status is not)."""
    placement: Placement = {}
    rows = status.get("voices")
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, Mapping) or not isinstance(row.get("name"), str):
            continue
        for worker in row.get("pinnedOn") or []:
            if isinstance(worker, str):
                placement.setdefault(worker, []).append(row["name"])
    return placement


def status_rows(voices: VoicesSpec, placement: Placement,
                reports: Mapping[str, Optional[VoiceReport]]) -> list[dict[str, Any]]:
    """status.voices: per voice, its minWorkers, the workers pinning it and those that report it loaded."""
    pinned = holders(placement)
    rows = []
    for name, wanted in voices.min_workers.items():
        on = pinned.get(name, [])
        loaded = sorted(w for w, r in reports.items() if r is not None and name in r.loaded_voices)
        rows.append({"name": name, "minWorkers": wanted, "pinned": len(on), "pinnedOn": on, "loadedOn": loaded})
    return rows


def placement_problem(voices: VoicesSpec, placement: Placement, workers: int) -> Optional[str]:
    """Why some voice is pinned on fewer workers than its minWorkers, or None."""
    short = shortfall(voices.min_workers, placement)
    if not short:
        return None
    listed = ", ".join(f"{v} on {voices.min_workers[v] - missing} of {voices.min_workers[v]}"
                       for v, missing in short.items())
    return (f"voices pinned on fewer workers than their minWorkers ({workers} workers, each keeping one voice slot "
            f"unpinned): {listed}")


class VoiceErrorLog:
    """The voice load failures already told, as (worker, voice, message), so each is told once. A failure a
    worker stops reporting is forgotten (it is told again if it comes back); at most `limit` are kept."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._told: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def new(self, reports: Mapping[str, Optional[VoiceReport]], workers: Collection[str]) -> list[tuple[str, str, str]]:
        """The failures in `reports` not told before. Workers not in `workers` are gone: their failures are
        forgotten; a worker whose report is None could not be asked: its failures are kept."""
        now = {(w, v, m[:MAX_EVENT_MESSAGE]) for w, r in reports.items() if r is not None
               for v, m in r.voice_errors.items()}
        for key in list(self._told):
            worker = key[0]
            if worker not in workers or (reports.get(worker) is not None and key not in now):
                del self._told[key]
        fresh = sorted(k for k in now if k not in self._told)
        for key in fresh:
            self._told[key] = None
        while len(self._told) > self.limit:
            self._told.popitem(last=False)
        return fresh
