"""Time sources used by every source (a live host's introspector, the synthetic node).

All introspection timestamps are integers in **milliseconds since the Unix
epoch** (PROTOCOL.md §3). The clock is injectable so tests can fake time;
durations that must not jump with an adjusted wall clock (DHT query durations)
are measured on a monotonic clock (:data:`MonotonicS`, :func:`time.monotonic`
by default), injectable too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: A wall clock: returns the current time in ms since the Unix epoch.
ClockMs = Callable[[], int]
#: A monotonic clock: seconds from an arbitrary origin, never going back
#: (:func:`time.monotonic`); only differences of two readings mean anything.
MonotonicS = Callable[[], float]


def wall_clock_ms() -> int:
    """The real wall clock, ms since the Unix epoch (from :func:`time.time_ns`)."""
    return time.time_ns() // 1_000_000


def seconds_to_ms(seconds: float) -> int:
    """Convert a ``time.time()``-style float (seconds since epoch) to integer ms."""
    return int(seconds * 1000)
