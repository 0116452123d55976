"""Fast in-process tests of the router's pool, outlier ejection, poison memory and Retry-After policy."""

from __future__ import annotations

import time

import pytest

from support.router_pool import pool_of, worker
from tts_common.retry_after import MAX_RETRY_AFTER, retry_after_seconds
from tts_router.health import Outcomes, OutlierRules, doubtful, ejection_reason, ejection_seconds, may_eject
from tts_router.poison import PoisonMemory, fingerprint
from tts_router.policy import make_policy
from tts_router.pool import DEFAULT_SECONDS_PER_CHAR

pytestmark = pytest.mark.unit

LEAST_WORK = make_policy("least-work", seed=1)


# -- outlier rules (pure) ------------------------------------------------------------------------------------


def outcomes(errors: int, ok: int, consecutive: int = 0) -> Outcomes:
    o = Outcomes(window=20)
    for _ in range(ok):
        o.add(error=False, gateway_failure=False)
    for _ in range(errors):
        o.add(error=True, gateway_failure=False)
    o.consecutive_failures = consecutive
    return o


def test_consecutive_gateway_failures_eject():
    rules = OutlierRules(consecutive_failures=3)
    assert ejection_reason(outcomes(0, 0, consecutive=2), [], rules) is None
    assert "3 consecutive" in (ejection_reason(outcomes(0, 0, consecutive=3), [], rules) or "")


def test_an_error_rate_far_above_the_peers_ejects_but_a_request_failing_everywhere_does_not():
    rules = OutlierRules()
    bad = outcomes(errors=12, ok=0)
    assert ejection_reason(bad, [outcomes(0, 6), outcomes(0, 4)], rules) is not None
    # The same errors everywhere (a client's bad request): nobody stands out.
    assert ejection_reason(bad, [outcomes(6, 0), outcomes(5, 0)], rules) is None
    # Too few requests to judge, or no peers to compare with.
    assert ejection_reason(outcomes(errors=5, ok=0), [outcomes(0, 10)], rules) is None
    assert ejection_reason(bad, [outcomes(0, 2)], rules) is None


def test_the_ejection_cap_never_empties_the_pool():
    rules = OutlierRules(max_ejected_share=0.5)
    assert not may_eject(0, 1, rules)
    assert may_eject(0, 2, rules) and not may_eject(1, 2, rules)
    assert may_eject(0, 3, rules) and not may_eject(1, 3, rules)
    assert may_eject(1, 4, rules) and not may_eject(2, 4, rules)


def test_ejections_grow_longer_up_to_a_cap():
    rules = OutlierRules(base_ejection_seconds=5, max_ejection_seconds=30)
    assert [ejection_seconds(n, rules) for n in range(5)] == [5, 10, 20, 30, 30]


# -- the pool and its leases -----------------------------------------------------------------------------------


async def test_retries_exclude_by_url_even_when_workers_share_a_name():
    a, b = worker("http://a"), worker("http://b")
    pool = pool_of(a, b)
    first = await pool.reserve(10, set(), LEAST_WORK, wait=0)
    assert first is not None
    first.failed("reset")
    second = await pool.reserve(10, {first.worker.url}, LEAST_WORK, wait=0)
    assert second is not None and second.worker.url != first.worker.url
    assert await pool.reserve(10, {"http://a", "http://b"}, LEAST_WORK, wait=0) is None


async def test_counters_move_only_through_the_lease_and_settle_once():
    a = worker("http://a")
    pool = pool_of(a)
    lease = await pool.reserve(10, set(), LEAST_WORK, wait=0)
    assert lease is not None
    assert (a.routed, a.in_flight, a.sent_since_poll) == (1, 1, 1)
    lease.succeeded()
    lease.failed("late")  # ignored: one outcome per lease
    assert (a.in_flight, a.completed, a.failed) == (0, 1, 0)


async def test_a_cold_worker_is_priced_at_its_peers_speed():
    busy = worker("http://busy", seconds_per_char=0.01, queued_work_seconds=2.0, queue_depth=2)
    cold = worker("http://cold", seconds_per_char=0.0, queued_chars=1000, queue_depth=3)
    pool = pool_of(busy, cold)
    reference = pool.reference_seconds_per_char()
    assert reference == 0.01
    # 1000 queued characters at the peers' 0.01 s/char is 10 s of work: more than the busy worker's 2 s.
    assert cold.expected_finish(100, reference) == pytest.approx(10.0 + 1.0)
    lease = await pool.reserve(100, set(), LEAST_WORK, wait=0)
    assert lease is not None and lease.worker is busy
    assert pool_of(worker("http://x", seconds_per_char=0.0)).reference_seconds_per_char() == DEFAULT_SECONDS_PER_CHAR


async def test_a_failing_worker_is_ejected_probed_and_readmitted():
    bad, good = worker("http://bad"), worker("http://good")
    pool = pool_of(bad, good, consecutive_failures=3, base_ejection_seconds=5)
    for _ in range(3):
        lease = await pool.reserve(10, {"http://good"}, LEAST_WORK, wait=0)
        assert lease is not None and lease.worker is bad
        lease.failed("answered 500")
    assert bad.ejected and pool.ejections == {"same-name": 1}
    assert await pool.reserve(10, {"http://good"}, LEAST_WORK, wait=0) is None  # ejected: not chosen
    bad.ejected_until = time.monotonic()  # the ejection is over: the next request is its probe
    probe = await pool.reserve(10, set(), LEAST_WORK, wait=0)
    assert probe is not None and probe.worker is bad and probe.probe
    # Only one probe at a time.
    other = await pool.reserve(10, set(), LEAST_WORK, wait=0)
    assert other is not None and other.worker is good
    probe.failed("answered 500")
    assert bad.ejected and bad.ejected_until - time.monotonic() > 9  # ejected again, for twice as long
    bad.ejected_until = time.monotonic()
    probe = await pool.reserve(10, set(), LEAST_WORK, wait=0)
    assert probe is not None and probe.worker is bad
    probe.succeeded()
    assert not bad.ejected


async def test_a_worker_refusing_what_its_peers_serve_is_ejected():
    bad, good = worker("http://bad"), worker("http://good")
    pool, in_turn = pool_of(bad, good, window=20), make_policy("round-robin")
    for _ in range(24):
        lease = await pool.reserve(10, set(), in_turn, wait=0)
        assert lease is not None
        if lease.worker is bad:
            lease.rejected("answered 400")
        else:
            lease.succeeded()
        lease.worker.sent_since_poll = 0  # as a poll would
    assert bad.ejected and "error rate" in bad.ejected_reason and not good.ejected


async def test_a_suspect_worker_yields_to_its_peers_until_they_can_be_compared():
    bad, good = worker("http://bad", seconds_per_char=0.0001), worker("http://good", seconds_per_char=0.01)
    pool = pool_of(bad, good)
    chosen = []
    for _ in range(25):
        lease = await pool.reserve(10, set(), LEAST_WORK, wait=0)
        assert lease is not None
        chosen.append(lease.worker.url)
        if lease.worker is bad:
            lease.rejected("answered 400")
        else:
            lease.succeeded()
        lease.worker.sent_since_poll = lease.worker.work_since_poll = 0  # as a poll would
    # Least-work prefers the fast-looking worker; after 10 errors its peer gets the traffic, then it is ejected.
    assert chosen[:10] == ["http://bad"] * 10 and chosen[10:15] == ["http://good"] * 5
    assert bad.ejected and set(chosen[15:]) == {"http://good"}


def test_a_run_of_errors_while_peers_succeed_is_doubted():
    rules = OutlierRules(doubt_after=3)
    assert not doubtful(outcomes(errors=2, ok=0), [outcomes(0, 5)], rules)
    assert doubtful(outcomes(errors=3, ok=5), [outcomes(0, 5)], rules)
    assert doubtful(outcomes(errors=3, ok=0), [], rules)  # no record elsewhere: worth a try
    assert not doubtful(outcomes(errors=3, ok=0), [outcomes(4, 1)], rules)  # failing everywhere: pass it on


async def test_the_only_worker_is_never_ejected_for_its_answers():
    only = worker("http://only")
    pool = pool_of(only)
    for _ in range(10):
        lease = await pool.reserve(10, set(), LEAST_WORK, wait=0)
        assert lease is not None
        lease.failed("answered 500")
    assert not only.ejected


# -- poison memory and Retry-After -----------------------------------------------------------------------------


def test_a_request_is_condemned_after_breaking_two_different_workers_within_the_ttl():
    now = [0.0]
    memory = PoisonMemory(ttl=60, capacity=3, clock=lambda: now[0])
    fp = fingerprint('{"text": "a"}')
    assert memory.record_break(fp, "w0") == ["w0"]
    assert memory.record_break(fp, "w0") == ["w0"] and memory.condemned(fp) is None
    assert memory.record_break(fp, "w1") == ["w0", "w1"] and memory.condemned(fp) == ["w0", "w1"]
    now[0] = 61.0
    assert memory.condemned(fp) is None  # forgotten after the ttl
    for i in range(5):
        memory.record_break(f"fp{i}", "w0")
    assert len(memory) == 3  # bounded


def test_one_retry_after_policy():
    assert retry_after_seconds(admitted=10, capacity=10, seconds_per_request=2.5) == 3
    assert retry_after_seconds(admitted=12, capacity=10, seconds_per_request=2.0) == 6
    assert retry_after_seconds(admitted=0, capacity=10, seconds_per_request=0.0) == 1
    assert retry_after_seconds(admitted=1000, capacity=10, seconds_per_request=5.0) == MAX_RETRY_AFTER
    soon, later = worker("http://a", retry_after_seconds=3), worker("http://b", retry_after_seconds=7)
    assert pool_of(soon, later).retry_after() == 3  # the soonest worker's own estimate, passed on



async def test_a_worker_that_refused_is_held_out_longer_each_time_until_it_admits_one():
    """Issue 30: a worker answering 503 while its /stats says it has room drew every request first, each spending
    a retry, until the retry budget was gone and its 503s reached clients while a peer stood idle."""
    refusing, peer = worker("http://a", seconds_per_char=0.001), worker("http://b", seconds_per_char=0.01)
    pool = pool_of(refusing, peer)
    holds = []
    for _ in range(5):
        refusing.refused_until = 0.0  # as if its hold were over
        lease = await pool.reserve(10, set(), LEAST_WORK, wait=0)
        assert lease is not None and lease.worker is refusing  # the cheaper one, by its /stats
        lease.refused(retry_after=3)
        holds.append(round(refusing.refused_until - time.monotonic(), 1))
        other = await pool.reserve(10, set(), LEAST_WORK, wait=0)
        assert other is not None and other.worker is peer  # held out: the next request goes to the peer at once
        other.succeeded()
    assert holds == [0.5, 1.0, 2.0, 3.0, 3.0]  # doubling, never past its own Retry-After
    refusing.refused_until = 0.0
    lease = await pool.reserve(10, set(), LEAST_WORK, wait=0)
    assert lease is not None and lease.worker is refusing
    lease.succeeded()  # it admitted one: the run of refusals is over
    assert (refusing.refusals, refusing.refused_until) == (0, 0.0)
    assert (refusing.failed, refusing.outcomes.errors) == (0, 0)  # a refusal says nothing about its health
