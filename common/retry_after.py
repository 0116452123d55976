"""One `Retry-After` policy for worker and router: when is a slot likely to be free?"""

from __future__ import annotations

import math

# Past a minute a client should rather hear that the service is overloaded than be told to wait.
MAX_RETRY_AFTER = 60


def retry_after_seconds(admitted: int, capacity: int, seconds_per_request: float) -> int:
    """Seconds until one more request would be admitted: the requests that must finish before a slot frees, times
    the measured seconds per request (1 s while nothing is measured); at least 1, at most `MAX_RETRY_AFTER`."""
    ahead = max(1, admitted - capacity + 1)
    per = seconds_per_request if seconds_per_request > 0 else 1.0
    return min(MAX_RETRY_AFTER, max(1, math.ceil(ahead * per)))
