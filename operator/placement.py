"""Which workers keep which voices loaded (`spec.voices[*].minWorkers`), as a pure function.

A pinned voice is never evicted from its worker, so every worker keeps one of its `max_loaded_voices` slots free for
the voices requests ask for unpinned: at most `max_loaded_voices - 1` pins per worker. The result is stable (a
worker keeps the pins it has while they are still wanted; a pin moves only to make room for one that would not fit
otherwise, so scaling reshuffles nothing) and deterministic (the same inputs give the same placement, whatever the
order of `workers`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Placement = dict[str, list[str]]  # worker id -> pinned voices


def place(min_workers: Mapping[str, int], workers: Sequence[str], current: Mapping[str, Sequence[str]],
          max_loaded_voices: int) -> Placement:
    """Each voice on min(minWorkers, len(workers)) workers, at most `max_loaded_voices - 1` pins per worker.

    When every pin fits, every count is met; when not, as many pins as fit are placed, voices earlier in
    `min_workers` first (its order is the spec's), and `shortfall` says what is missing. Current pins stay unless
    a voice is no longer wanted there, or one pin must move to make room for a voice that fits only then. Only
    workers that hold a pin appear in the result; voices are listed in `min_workers` order."""
    names = sorted(set(workers))
    cap = max(0, max_loaded_voices - 1)
    wanted = {v: min(max(0, n), len(names)) for v, n in min_workers.items()}
    placement = _keep(current, names, wanted, cap)
    _fill(placement, names, wanted, cap)
    while _make_room(placement, names, wanted, cap):
        pass
    order = list(min_workers)
    return {w: sorted(vs, key=order.index) for w, vs in sorted(placement.items()) if vs}


def shortfall(min_workers: Mapping[str, int], placement: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Voices pinned on fewer workers than their minWorkers, with how many are missing."""
    held = holders(placement)
    return {v: n - len(held.get(v, [])) for v, n in min_workers.items() if len(held.get(v, [])) < n}


def holders(placement: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Voice -> the workers pinning it, sorted."""
    out: dict[str, list[str]] = {}
    for worker in sorted(placement):
        for voice in dict.fromkeys(placement[worker]):
            out.setdefault(voice, []).append(worker)
    return out


def _keep(current: Mapping[str, Sequence[str]], names: list[str], wanted: Mapping[str, int],
          cap: int) -> dict[str, list[str]]:
    """The current pins still wanted: on workers that still exist, within the cap, no voice on more workers than
    it wants now (the surplus leaves the most loaded workers first)."""
    kept = {w: [v for v in dict.fromkeys(current.get(w, ())) if wanted.get(v, 0) > 0][:cap] for w in names}
    for voice, want in wanted.items():
        on = [w for w in names if voice in kept[w]]
        for worker in sorted(on, key=lambda w: (-len(kept[w]), w))[: max(0, len(on) - want)]:
            kept[worker].remove(voice)
    return kept


def _fill(placement: dict[str, list[str]], names: list[str], wanted: Mapping[str, int], cap: int) -> None:
    """Add the missing pins, each voice on the workers with the fewest pins (then by name)."""
    for voice, want in wanted.items():
        missing = want - _count(placement, voice)
        room = sorted((w for w in names if voice not in placement[w] and len(placement[w]) < cap),
                      key=lambda w: (len(placement[w]), w))
        for worker in room[: max(0, missing)]:
            placement[worker].append(voice)


def _make_room(placement: dict[str, list[str]], names: list[str], wanted: Mapping[str, int], cap: int) -> bool:
    """Place one more pin of the first voice still short, moving one pin if need be; False when none can be.

    After `_fill`, a short voice `v` finds every worker without it full. If some worker `x` still has room, it
    holds `v` and fewer pins than a full worker `w` without `v`, so `w` holds at least two voices `x` lacks: one of
    them moves to `x` and `v` takes its slot on `w`. So one move per pin places every pin that fits."""
    spare = sorted((w for w in names if len(placement[w]) < cap), key=lambda w: (len(placement[w]), w))
    if not spare:
        return False
    for voice, want in wanted.items():
        if _count(placement, voice) >= want:
            continue
        free = next((w for w in spare if voice not in placement[w]), None)
        if free is not None:
            placement[free].append(voice)
            return True
        x = spare[0]
        for w in names:
            movable = [u for u in placement[w] if u not in placement[x]] if voice not in placement[w] else []
            if movable:
                placement[w].remove(movable[-1])  # the voice latest in the spec's order moves
                placement[x].append(movable[-1])
                placement[w].append(voice)
                return True
    return False


def _count(placement: Mapping[str, Sequence[str]], voice: str) -> int:
    return sum(voice in vs for vs in placement.values())
