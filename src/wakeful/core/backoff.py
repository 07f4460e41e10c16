"""One backoff for everything that waits on the store to come back: 50 ms, doubled
after each failure, at most 2 s. Writers holding writes through an outage, the
notification listener reconnecting, and a task loop or a delegation asking again
after a commit whose outcome was lost all retry on this schedule."""

from __future__ import annotations

FIRST_WAIT_S = 0.05
LONGEST_WAIT_S = 2.0


def next_wait(previous: float) -> float:
    """The wait after one that lasted ``previous`` seconds (0: the first)."""
    return min(LONGEST_WAIT_S, max(FIRST_WAIT_S, previous * 2))
