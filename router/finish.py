"""When a new request would finish on a worker: the model `least-work` routing compares, as a pure function.

A one-at-a-time worker runs its admitted requests in turn, so a new one finishes after all the admitted work and
then its own. A batching worker runs up to `max_batch` at once: while it has a free place a new request starts at
once and finishes after its own time at the worker's concurrency; once the batch is full it waits for a place to
free, which, with requests leaving the batch one by one as each finishes, takes the share of the admitted work
that belongs to the requests that must finish first.
"""

from __future__ import annotations


def expected_finish(own_seconds: float, work_ahead: float, admitted: int, max_batch: int) -> float:
    """Seconds until a new request finishes on a worker.

    own_seconds: the request's own time there (its characters x the worker's seconds per character, which a
    batching worker measures at the concurrency it runs with).
    work_ahead: engine seconds of the work admitted there (its queued_work_seconds, plus what was sent since the
    poll), which a batching worker prices at its aggregate speed.
    admitted: requests admitted there (waiting + in the engine, plus those sent since the poll).
    max_batch: most requests it serves at once (1: one at a time).
    """
    if max_batch <= 1:
        return work_ahead + own_seconds
    if admitted < max_batch:
        return own_seconds  # a free place: it runs alongside the others from its first step
    # Full: a place frees once (admitted - max_batch + 1) of the admitted requests are done; taking them as of
    # average size, that is their share of the admitted work, done at the worker's aggregate speed.
    ahead = admitted - max_batch + 1
    return work_ahead * ahead / admitted + own_seconds
