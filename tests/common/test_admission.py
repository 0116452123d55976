"""Connection admission at the limit (`tts_common.admission`): idle and half-sent connections make room for new ones;
only busy ones are never displaced; one peer displaces only its own."""

from __future__ import annotations

from tts_common.admission import Admission, State, Verdict


def test_at_the_limit_the_oldest_idle_connection_makes_room_then_the_oldest_reading_one():
    adm: Admission[str] = Admission(max_connections=3, max_per_peer=10)
    for conn in ("a", "b", "c"):
        assert adm.admit(conn, "10.0.0.1") == (Verdict.ADMIT, [])
    adm.set_state("a", State.BUSY)
    adm.set_state("b", State.READING)
    assert adm.admit("d", "10.0.0.2") == (Verdict.ADMIT, [("c", State.IDLE)])
    adm.set_state("d", State.BUSY)
    assert adm.admit("e", "10.0.0.2") == (Verdict.ADMIT, [("b", State.READING)])
    adm.set_state("e", State.BUSY)
    assert adm.admit("f", "10.0.0.3") == (Verdict.REFUSE, [])  # every one busy: only now is a client refused
    assert len(adm) == 3 and adm.peer_count("10.0.0.3") == 0


def test_a_connection_idle_again_after_its_answer_is_displaced_in_the_order_it_became_idle():
    adm: Admission[str] = Admission(max_connections=2, max_per_peer=10)
    adm.admit("a", "p")
    adm.admit("b", "p")
    adm.set_state("a", State.BUSY)
    adm.set_state("a", State.IDLE)  # answered, kept alive: now younger than b
    assert adm.admit("c", "p") == (Verdict.ADMIT, [("b", State.IDLE)])


def test_a_peer_at_its_cap_displaces_its_own_idle_connections_never_another_peers():
    adm: Admission[str] = Admission(max_connections=100, max_per_peer=2)
    adm.admit("mine", "client")
    adm.admit("f1", "flood")
    adm.admit("f2", "flood")
    assert adm.admit("f3", "flood") == (Verdict.ADMIT, [("f1", State.IDLE)])
    adm.set_state("f2", State.BUSY)
    adm.set_state("f3", State.BUSY)
    assert adm.admit("f4", "flood") == (Verdict.REFUSE, [])
    assert adm.state("mine") is State.IDLE and adm.peer_count("flood") == 2


def test_closed_connections_stop_counting_and_forgotten_peers_leave_nothing_behind():
    adm: Admission[int] = Admission(max_connections=10, max_per_peer=10)
    for n in range(1000):  # many peers coming and going: the tables stay bounded by those connected now
        adm.admit(n, f"10.0.{n // 256}.{n % 256}")
        adm.set_state(n, State.READING)
        adm.forget(n)
    assert len(adm) == 0 and not adm._per_peer and not adm._peer_evictable
    assert adm.forget(5) is State.BUSY  # an unknown one: nothing to undo
