"""The engine's held voices in-process: eviction frees a voice before the next one loads, a changed definition
loads anew, pins never take the last slot, and a failed load holds nothing but its error."""

from __future__ import annotations

import gc
import weakref

import pytest

from tts_worker.loaded_voices import LoadedVoices, NoVoiceSlot, RecentlyFailed

pytestmark = pytest.mark.unit


class Model:
    """Stands for a model pair's memory."""


def test_the_evicted_voice_is_gone_before_the_next_one_loads():
    voices: LoadedVoices[Model] = LoadedVoices(1)
    first = weakref.ref(voices.get("a", "v1", Model))
    released: list[bool] = []

    def load() -> Model:
        gc.collect()
        released.append(first() is None)  # nothing keeps the evicted model alive while the new one loads
        return Model()

    voices.get("b", "v1", load, evicted=lambda state: None)
    assert released == [True] and voices.names() == ["b"]


def test_a_changed_definition_is_loaded_anew_and_the_old_one_dropped():
    voices: LoadedVoices[str] = LoadedVoices(2)
    assert voices.get("a", {"tone": 1}, lambda: "one") == "one"
    assert voices.get("a", {"tone": 1}, lambda: "never") == "one"  # same definition: held
    assert voices.holds("a", {"tone": 1}) and not voices.holds("a", {"tone": 2})
    assert voices.get("a", {"tone": 2}, lambda: "two") == "two"
    assert voices.names() == ["a"] and voices.loads == 2


def test_pins_leave_one_slot_and_a_failed_load_holds_nothing():
    voices: LoadedVoices[str] = LoadedVoices(2)
    voices.pin(["a", "b", "c"])
    assert voices.pinned() == ["a"]
    voices.get("a", 1, lambda: "A")
    voices.get("b", 1, lambda: "B")
    voices.get("c", 1, lambda: "C")  # b is evicted, a is pinned
    assert voices.names() == ["a", "c"]

    def broken() -> str:
        raise OSError("weights/d.pth: no such file")

    with pytest.raises(OSError):
        voices.get("d", 1, broken)
    assert voices.names() == ["a"] and voices.errors() == {"d": "weights/d.pth: no such file"}
    with pytest.raises(RecentlyFailed, match="weights/d.pth"):  # no second load moments later...
        voices.get("d", 1, lambda: pytest.fail("loaded again"))
    assert voices.get("d", 2, lambda: "D2") == "D2"  # ... unless its definition changed
    voices.drop(["d"])
    assert voices.loading() == []
    voices.forget(["a"])
    assert voices.errors() == {} and set(voices.load_seconds()) == {"a"}
    one: LoadedVoices[str] = LoadedVoices(1)
    one.pin(["a"])
    assert one.pinned() == []  # a single slot is never pinned away


def test_a_load_evicts_a_voice_the_queue_does_not_want_while_it_can():
    voices: LoadedVoices[str] = LoadedVoices(2)
    voices.get("a", 1, lambda: "A")
    voices.get("b", 1, lambda: "B")
    voices.get("c", 1, lambda: "C", spare=frozenset({"a"}))  # a is least recent, but queued requests want it
    assert voices.names() == ["a", "c"]
    voices.get("d", 1, lambda: "D", spare=frozenset({"a", "c"}))  # everything wanted: least recent after all
    assert voices.names() == ["c", "d"]


def test_a_full_set_of_pins_refuses_clearly():
    voices: LoadedVoices[str] = LoadedVoices(2)
    voices.pin(["a"])
    voices.get("a", 1, lambda: "A")
    voices.limit = 1  # as if the limit shrank under the pins
    with pytest.raises(NoVoiceSlot, match="all 1 voice slots hold pinned voices"):
        voices.get("b", 1, lambda: "B")


def test_a_protected_voice_is_never_evicted_and_without_another_the_load_is_refused():
    voices: LoadedVoices[str] = LoadedVoices(2)
    voices.get("a", "v1", lambda: "a")
    voices.get("b", "v1", lambda: "b")
    # a is the least recently used, but protected: b goes instead
    voices.get("c", "v1", lambda: "c", protect=frozenset({"a"}))
    assert voices.names() == ["a", "c"]
    with pytest.raises(NoVoiceSlot, match="pinned or protected"):
        voices.get("d", "v1", lambda: "d", protect=frozenset({"a", "c"}))
    assert voices.names() == ["a", "c"] and voices.loading() == []
    # `spare` alone is only a preference: with nothing else to evict, a spared voice goes
    voices.get("d", "v1", lambda: "d", spare=frozenset({"a", "c"}))
    assert voices.names() == ["c", "d"]
