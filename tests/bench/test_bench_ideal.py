"""The ideal central queue the benchmarks compare against: checked against queueing facts, not against itself."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tts_bench.ideal import central_queue_latencies

pytestmark = pytest.mark.unit

jobs = st.lists(st.tuples(st.floats(0, 100), st.floats(0.001, 10)), min_size=1, max_size=60)


@given(jobs)
def test_enough_servers_means_no_waiting(js):
    arrivals, service = zip(*sorted(js), strict=True)
    assert central_queue_latencies(arrivals, service, len(js)) == pytest.approx(list(service))


@given(jobs)
def test_one_server_follows_lindleys_recursion(js):
    arrivals, service = zip(*sorted(js), strict=True)
    got = central_queue_latencies(arrivals, service, 1)
    wait = 0.0
    for i, (a, s) in enumerate(zip(arrivals, service, strict=True)):
        if i:
            wait = max(0.0, wait + service[i - 1] - (a - arrivals[i - 1]))
        assert got[i] == pytest.approx(wait + s)


@given(jobs, st.integers(1, 5))
def test_no_job_finishes_faster_than_its_service_or_waits_while_a_server_idles(js, servers):
    arrivals, service = zip(*sorted(js), strict=True)
    got = central_queue_latencies(arrivals, service, servers)
    assert all(lat >= s - 1e-9 for lat, s in zip(got, service, strict=True))
    # FIFO over identical servers: jobs start in arrival order (up to float rounding of a + latency - service).
    starts = [a + lat - s for a, lat, s in zip(arrivals, got, service, strict=True)]
    assert all(later >= earlier - 1e-9 for earlier, later in itertools.pairwise(starts))


def test_a_slow_server_takes_a_job_only_when_the_fast_one_is_busy():
    # Two jobs at once: the fast server takes the first, the 2x slow one the second.
    assert central_queue_latencies([0.0, 0.0], [1.0, 1.0], 2, speed=[2.0, 1.0]) == [1.0, 2.0]
    # One job: the fast server, although the slow one is listed first.
    assert central_queue_latencies([0.0], [1.0], 2, speed=[2.0, 1.0]) == [1.0]
    with pytest.raises(ValueError):
        central_queue_latencies([0.0], [1.0], 2, speed=[1.0])
