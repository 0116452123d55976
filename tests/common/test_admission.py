"""Connection admission at the limit (`tts_common.admission`): fresh, half-sent and idle connections make room for
new ones, in that order; busy ones are never displaced; one peer displaces only its own."""

from __future__ import annotations

import pytest

from tts_common.admission import Admission, State, Verdict

pytestmark = pytest.mark.unit


def test_at_the_limit_a_fresh_connection_makes_room_then_a_half_sent_one_then_a_kept_alive_one():
    adm: Admission[str] = Admission(max_connections=4, max_per_peer=10)
    for conn in ("kept", "reading", "fresh", "busy"):
        assert adm.admit(conn, "10.0.0.1") == (Verdict.ADMIT, [])
    for conn, state in (("kept", State.BUSY), ("kept", State.IDLE), ("reading", State.READING), ("busy", State.BUSY)):
        adm.set_state(conn, state)
    assert adm.admit("d", "10.0.0.2") == (Verdict.ADMIT, [("fresh", State.FRESH)])
    adm.set_state("d", State.BUSY)
    assert adm.admit("e", "10.0.0.2") == (Verdict.ADMIT, [("reading", State.READING)])
    adm.set_state("e", State.BUSY)
    assert adm.admit("f", "10.0.0.2") == (Verdict.ADMIT, [("kept", State.IDLE)])
    adm.set_state("f", State.BUSY)
    assert adm.admit("g", "10.0.0.3") == (Verdict.REFUSE, [])  # every one busy: only now is a client refused
    assert len(adm) == 4 and adm.peer_count("10.0.0.3") == 0


def test_within_a_class_the_oldest_goes_first_in_the_order_each_entered_it():
    adm: Admission[str] = Admission(max_connections=3, max_per_peer=10)
    for conn in ("a", "b", "busy"):
        adm.admit(conn, "p")
    adm.set_state("busy", State.BUSY)
    for conn in ("b", "a"):  # both answered and kept alive, b first
        adm.set_state(conn, State.BUSY)
        adm.set_state(conn, State.IDLE)
    assert adm.admit("c", "p") == (Verdict.ADMIT, [("b", State.IDLE)])


def test_a_peer_at_its_cap_displaces_its_own_idle_connections_never_another_peers():
    adm: Admission[str] = Admission(max_connections=100, max_per_peer=2)
    adm.admit("mine", "client")
    adm.admit("f1", "flood")
    adm.admit("f2", "flood")
    assert adm.admit("f3", "flood") == (Verdict.ADMIT, [("f1", State.FRESH)])
    adm.set_state("f2", State.BUSY)
    adm.set_state("f3", State.BUSY)
    assert adm.admit("f4", "flood") == (Verdict.REFUSE, [])
    assert adm.state("mine") is State.FRESH and adm.peer_count("flood") == 2


def test_closed_connections_stop_counting_and_forgotten_peers_leave_nothing_behind():
    adm: Admission[int] = Admission(max_connections=10, max_per_peer=10)
    for n in range(1000):  # many peers coming and going: the tables stay bounded by those connected now
        adm.admit(n, f"10.0.{n // 256}.{n % 256}")
        adm.set_state(n, State.READING)
        adm.forget(n)
    assert len(adm) == 0 and not adm._per_peer and not adm._peer_evictable
    assert adm.forget(5) is State.BUSY  # an unknown one: nothing to undo


def test_a_young_fresh_connection_goes_after_half_sent_ones_newest_first_and_before_kept_alive_ones():
    """A real client's request may not have been read yet on a loaded server: for `fresh_grace` seconds a fresh
    connection is displaced only after half-sent ones, the newest first (a burst's), and still before kept-alive
    ones, which a burst must not close."""
    now = [0.0]
    adm: Admission[str] = Admission(max_connections=4, max_per_peer=10, fresh_grace=1.0, clock=lambda: now[0])
    adm.admit("kept", "client")
    adm.set_state("kept", State.BUSY)
    adm.set_state("kept", State.IDLE)
    adm.admit("slow", "flood")
    adm.set_state("slow", State.READING)
    adm.admit("real", "client")  # opened, its request not read yet
    adm.admit("burst-1", "flood")
    assert adm.admit("burst-2", "flood") == (Verdict.ADMIT, [("slow", State.READING)])
    assert adm.admit("burst-3", "flood") == (Verdict.ADMIT, [("burst-2", State.FRESH)])  # the newest young one
    now[0] = 1.5  # "real" has sent nothing for longer than the grace: now it is taken for the flood's, and goes first
    assert adm.admit("burst-4", "flood") == (Verdict.ADMIT, [("real", State.FRESH)])
    for conn in ("burst-1", "burst-3", "burst-4"):
        adm.set_state(conn, State.BUSY)
    assert adm.admit("next", "client") == (Verdict.ADMIT, [("kept", State.IDLE)])  # only now a kept-alive one
    adm.set_state("next", State.BUSY)
    assert adm.admit("x", "p") == (Verdict.REFUSE, [])


def test_young_fresh_connections_still_make_room_when_nothing_else_can():
    adm: Admission[str] = Admission(max_connections=2, max_per_peer=10, fresh_grace=60.0)
    adm.admit("young", "p")
    adm.admit("busy", "p")
    adm.set_state("busy", State.BUSY)
    assert adm.admit("new", "p") == (Verdict.ADMIT, [("young", State.FRESH)])
