"""The voices' placement (operator/placement.py), in-process: a table of cases, then properties over random inputs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts_operator.placement import holders, place, shortfall

pytestmark = pytest.mark.unit

W3 = ["w-a", "w-b", "w-c"]


@pytest.mark.parametrize("case,min_workers,workers,current,slots,expected", [
    ("nothing wanted", {"alice": 0}, W3, {}, 3, {}),
    ("no workers", {"alice": 2}, [], {}, 3, {}),
    ("one voice on two of three, by name", {"alice": 2}, W3, {}, 3, {"w-a": ["alice"], "w-b": ["alice"]}),
    ("capped at the worker count", {"alice": 5}, W3, {}, 3,
     {"w-a": ["alice"], "w-b": ["alice"], "w-c": ["alice"]}),
    ("spread: each voice goes to the least pinned", {"alice": 1, "bob": 1, "carol": 1}, W3, {}, 3,
     {"w-a": ["alice"], "w-b": ["bob"], "w-c": ["carol"]}),
    ("one slot always left unpinned", {"alice": 1, "bob": 1, "carol": 1}, ["w-a"], {}, 3,
     {"w-a": ["alice", "bob"]}),
    ("one slot per worker: nothing can be pinned", {"alice": 1}, W3, {}, 1, {}),
    ("existing pins stay where they are", {"alice": 1}, W3, {"w-c": ["alice"]}, 3, {"w-c": ["alice"]}),
    ("a pin on a worker that is gone moves", {"alice": 1}, W3, {"w-gone": ["alice"]}, 3, {"w-a": ["alice"]}),
    ("scaling up adds nothing where nothing is missing", {"alice": 1, "bob": 1}, [*W3, "w-d"],
     {"w-b": ["alice"], "w-c": ["bob"]}, 3, {"w-b": ["alice"], "w-c": ["bob"]}),
    ("minWorkers lowered: the surplus leaves the most pinned worker", {"alice": 1, "bob": 1}, W3,
     {"w-a": ["alice", "bob"], "w-b": ["alice"]}, 3, {"w-a": ["bob"], "w-b": ["alice"]}),
    ("a voice no longer in the spec is unpinned", {"alice": 1}, W3, {"w-a": ["alice", "zed"]}, 3,
     {"w-a": ["alice"]}),
    ("slots lowered: pins over the cap are dropped, then placed elsewhere", {"alice": 1, "bob": 1}, W3,
     {"w-a": ["alice", "bob"]}, 2, {"w-a": ["alice"], "w-b": ["bob"]}),
    ("kept pins that block a voice are moved when that makes it fit", {"alice": 1, "bob": 1, "carol": 2},
     ["w-a", "w-b"], {"w-a": ["alice", "bob"]}, 3, {"w-a": ["alice", "carol"], "w-b": ["bob", "carol"]}),
    ("too many pins: earlier voices first", {"alice": 2, "bob": 2}, ["w-a", "w-b"], {}, 2,
     {"w-a": ["alice"], "w-b": ["alice"]}),
])
def test_placement_table(case, min_workers, workers, current, slots, expected):
    assert place(min_workers, workers, current, slots) == expected, case


def test_the_order_of_workers_does_not_matter():
    wanted = {"alice": 2, "bob": 1, "carol": 3}
    assert place(wanted, ["w-c", "w-a", "w-b"], {}, 3) == place(wanted, W3, {}, 3)


def test_shortfall_counts_against_min_workers():
    placement = place({"alice": 2, "bob": 4}, W3, {}, 2)  # one pin per worker: 3 pins for 5 wanted
    assert holders(placement) == {"alice": ["w-a", "w-b"], "bob": ["w-c"]}
    assert shortfall({"alice": 2, "bob": 4}, placement) == {"bob": 3}
    assert shortfall({"alice": 1}, {"w-a": ["alice"]}) == {}


voice_names = st.sampled_from([f"v{i}" for i in range(8)])
worker_names = st.sampled_from([f"w{i}" for i in range(10)])
inputs = st.tuples(
    st.dictionaries(voice_names, st.integers(0, 12), max_size=8),
    st.lists(worker_names, max_size=10, unique=True),
    st.dictionaries(worker_names, st.lists(voice_names, max_size=6), max_size=10),
    st.integers(1, 6),
)


@settings(max_examples=300, deadline=None)
@given(inputs)
def test_bound_held_and_only_wanted_voices_on_existing_workers(args):
    min_workers, workers, current, slots = args
    result = place(min_workers, workers, current, slots)
    for worker, voices in result.items():
        assert worker in workers
        assert 0 < len(voices) <= slots - 1
        assert len(set(voices)) == len(voices)
        assert all(min_workers.get(v, 0) > 0 for v in voices)
    for voice, on in holders(result).items():
        assert len(on) <= min_workers[voice]


@settings(max_examples=300, deadline=None)
@given(inputs)
def test_counts_met_whenever_they_fit(args):
    min_workers, workers, current, slots = args
    wanted = {v: min(n, len(workers)) for v, n in min_workers.items()}
    result = place(min_workers, workers, current, slots)
    placed = sum(len(vs) for vs in result.values())
    if sum(wanted.values()) <= (slots - 1) * len(workers):
        assert {v: len(on) for v, on in holders(result).items()} == {v: n for v, n in wanted.items() if n}
    else:  # as many as fit: every slot that may hold a pin holds one
        assert placed == (slots - 1) * len(workers)


@settings(max_examples=300, deadline=None)
@given(inputs)
def test_stable_and_deterministic(args):
    min_workers, workers, current, slots = args
    first = place(min_workers, workers, current, slots)
    assert place(min_workers, list(reversed(workers)), current, slots) == first
    assert place(min_workers, workers, first, slots) == first  # a placement in force is kept as it is


def pins(placement: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {(w, v) for w, vs in placement.items() for v in vs}


@settings(max_examples=300, deadline=None)
@given(inputs, st.lists(worker_names, max_size=4, unique=True))
def test_scaling_up_moves_a_pin_only_to_place_another(args, added):
    min_workers, workers, current, slots = args
    before = place(min_workers, workers, current, slots)
    after = place(min_workers, sorted(set(workers) | set(added)), before, slots)
    assert len(pins(before) - pins(after)) <= len(pins(after) - pins(before)) // 2
    if not shortfall({v: min(n, len(workers)) for v, n in min_workers.items()}, before) and \
            all(n <= len(workers) for n in min_workers.values()):
        assert after == before  # nothing was missing, nothing more is wanted: nothing moves


@settings(max_examples=300, deadline=None)
@given(inputs, st.integers(0, 3))
def test_scaling_down_keeps_the_pins_of_the_workers_that_stay(args, removed):
    min_workers, workers, current, slots = args
    before = place(min_workers, workers, current, slots)
    staying = sorted(workers)[removed:]
    after = place(min_workers, staying, before, slots)
    kept = {(w, v) for w, v in pins(before) if w in staying and min(min_workers[v], len(staying)) > 0}
    # a voice wanted on more workers than remain loses its surplus; any other pin moves only to place another
    surplus = {(w, v) for w, v in kept if min_workers[v] > len(staying)}
    assert len((kept - surplus) - pins(after)) <= len(pins(after) - pins(before)) // 2
