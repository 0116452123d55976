"""How one attempt on one worker ended (its lease's outcome), and the one map from a worker's HTTP answer to it.

The outcome is what the worker's health record learns (outlier detection, probes, the run of 503s); it is not
what the client is told: a 503 held while a peer is tried never reaches the client, a 504 does.
"""

from __future__ import annotations

from enum import Enum


class Outcome(Enum):
    SUCCEEDED = "succeeded"  # a complete 2xx answer
    FAILED = "failed"  # a gateway failure: connect error, broken connection, a 5xx, a stream the worker cut
    REJECTED = "rejected"  # a 4xx for a request the router had validated: an error, not a gateway failure
    REFUSED = "refused"  # a 503, full or draining: its slot was never ours; says nothing of its health
    ABANDONED = "abandoned"  # the client left, or the worker's own deadline passed (504): a sign of load

    @property
    def admitted(self) -> bool:
        """Whether the worker took the request (its run of refusals is over)."""
        return self is not Outcome.REFUSED

    @property
    def judges_health(self) -> bool:
        """Whether it counts in the worker's record of errors and gateway failures."""
        return self in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.REJECTED)


def answer_outcome(status: int) -> Outcome:
    """A worker's complete answer with this status, whether passed on or held while a peer is tried."""
    if status < 400:
        return Outcome.SUCCEEDED
    if status == 503:
        return Outcome.REFUSED
    if status == 504:
        return Outcome.ABANDONED
    if status < 500:
        return Outcome.REJECTED
    return Outcome.FAILED
