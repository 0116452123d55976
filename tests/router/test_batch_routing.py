"""The router's model of when a request finishes on a batching worker, and least-work routing with it: in-process,
on made-up worker stats."""

from __future__ import annotations

import pytest

from support.router_pool import pool_of, stats, worker
from tts_router.finish import expected_finish
from tts_router.policy import make_policy

pytestmark = pytest.mark.unit

LEAST_WORK = make_policy("least-work", seed=1)


@pytest.mark.parametrize("admitted", [0, 1, 2, 7])
def test_a_one_at_a_time_worker_finishes_a_request_after_all_its_admitted_work(admitted):
    assert expected_finish(own_seconds=1.5, work_ahead=4.0, admitted=admitted, max_batch=1) == 5.5


def test_a_batching_worker_with_a_free_place_starts_the_request_at_once():
    for admitted in range(4):
        assert expected_finish(own_seconds=1.5, work_ahead=40.0, admitted=admitted, max_batch=4) == 1.5


def test_a_full_batching_worker_makes_it_wait_for_the_part_of_its_queue_that_frees_a_place():
    # 4 in the batch: the first of them to finish frees a place (a quarter of the work, at the aggregate speed).
    assert expected_finish(1.5, 40.0, admitted=4, max_batch=4) == pytest.approx(10.0 + 1.5)
    # 4 more waiting: 5 of the 8 must finish first.
    assert expected_finish(1.5, 40.0, admitted=8, max_batch=4) == pytest.approx(25.0 + 1.5)
    waits = [expected_finish(1.5, 5.0 * n, admitted=n, max_batch=4) for n in range(12)]
    assert waits == sorted(waits), "a longer queue never finishes sooner"


def test_old_workers_without_batch_fields_read_as_one_at_a_time():
    s = stats("old")
    assert (s.max_batch, s.batch_occupancy, s.chars_per_second) == (1, 0, 0.0)


async def test_a_batching_worker_with_free_places_beats_a_one_at_a_time_worker_with_the_same_queue():
    same = dict(seconds_per_char=0.01, queued_chars=300, queued_work_seconds=3.0)
    single = worker("http://single", in_flight=1, queue_depth=2, **same)
    batching = worker("http://batching", in_flight=3, queue_depth=0, max_batch=8, batch_occupancy=3,
                      chars_per_second=250.0, **same)
    pool = pool_of(single, batching)
    reference = pool.reference_seconds_per_char()
    assert batching.expected_finish(100, reference) == pytest.approx(1.0)  # no wait: only its own time
    assert single.expected_finish(100, reference) == pytest.approx(3.0 + 1.0)
    lease = await pool.reserve(100, set(), LEAST_WORK, wait=0)
    assert lease is not None and lease.worker is batching


async def test_a_full_batching_worker_is_priced_by_its_queue():
    full = worker("http://full", in_flight=2, queue_depth=6, max_batch=2, batch_occupancy=2, seconds_per_char=0.01,
                  chars_per_second=200.0, queued_chars=800, queued_work_seconds=40.0)
    single = worker("http://single", in_flight=1, queue_depth=0, seconds_per_char=0.01, queued_work_seconds=5.0)
    pool = pool_of(full, single)
    # 7 of its 8 admitted must finish before a place frees: 7/8 of 40 s, then its own 1 s.
    assert full.expected_finish(100, pool.reference_seconds_per_char()) == pytest.approx(35.0 + 1.0)
    lease = await pool.reserve(100, set(), LEAST_WORK, wait=0)
    assert lease is not None and lease.worker is single


async def test_requests_sent_since_the_poll_fill_a_batching_workers_free_places():
    batching = worker("http://batching", max_batch=2, seconds_per_char=0.01, chars_per_second=300.0)
    single = worker("http://single", seconds_per_char=0.012)
    pool = pool_of(batching, single)
    chosen = []
    for _ in range(4):
        lease = await pool.reserve(100, set(), LEAST_WORK, wait=0)
        assert lease is not None
        chosen.append(lease.worker.url)
    # Two places free on the batching worker (1.0 s each, against 1.2 s alone on the other). The third would wait
    # there for half of the 2 x 100 / 300 s admitted, then take 1.0 s (1.33 s): the other's 1.2 s wins. The fourth
    # would wait for 2/3 of 1 s there (1.67 s in all), against 1.2 + 1.2 s behind the other's one.
    assert chosen == ["http://batching", "http://batching", "http://single", "http://batching"]
    # What was sent counts at the batching worker's aggregate speed, not at one request's speed.
    assert batching.work_since_poll == pytest.approx(3 * 100 / 300.0)
    assert single.work_since_poll == pytest.approx(100 * 0.012)
