"""The one map from a worker's answer to its lease's outcome, and who counts a request as completed or failed."""

from __future__ import annotations

import pytest

from tts_router.outcome import Outcome, answer_outcome
from tts_router.stats import RequestCounters

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Outcome.SUCCEEDED), (206, Outcome.SUCCEEDED), (400, Outcome.REJECTED), (404, Outcome.REJECTED),
    (429, Outcome.REJECTED), (500, Outcome.FAILED), (502, Outcome.FAILED), (501, Outcome.FAILED),
    (503, Outcome.REFUSED), (504, Outcome.ABANDONED),
])
def test_each_answer_has_one_outcome(status: int, outcome: Outcome) -> None:
    assert answer_outcome(status) is outcome


def test_only_a_refusal_leaves_the_request_unadmitted_and_only_served_answers_judge_health() -> None:
    assert [o for o in Outcome if not o.admitted] == [Outcome.REFUSED]
    assert {o for o in Outcome if o.judges_health} == {Outcome.SUCCEEDED, Outcome.FAILED, Outcome.REJECTED}


def test_the_counters_count_2xx_as_completed_5xx_as_failed_and_the_clients_doing_as_neither() -> None:
    counters = RequestCounters()
    for status in (200, 200, 400, 404, 499, 500, 502, 503, 504):
        counters.record(status)
    assert (counters.completed, counters.failed, counters.total) == (2, 4, 6)
