"""How many idle connections a dyno's pool keeps: what the recent load needs, no more.

A fixed cap either starves a busy dyno (at 1000 concurrent requests a cap of 64 means most
requests open, and then close, a connection of their own) or hoards sockets for a dyno whose
load fell. `RecentPeak` remembers the highest concurrency a dyno saw in each of the last
`window` housekeeping ticks (about a second each); the pool keeps idle connections up to the
router's flag (`--pool-max-idle`) while they are returned, and the periodic sweep closes those
beyond the recent peak, oldest first, so a steady load reuses its connections and a load that
dropped gives them back within the window.

The request path only raises `DynoPool.peak` when its in-flight count passes it (one compare);
everything else runs once a tick. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections import deque


class RecentPeak:
    __slots__ = ("_peaks",)

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"the window must be at least one tick, got {window}")
        self._peaks: deque[int] = deque(maxlen=window)

    def tick(self, peak: int) -> int:
        """Record this tick's peak concurrency; the highest over the window."""
        self._peaks.append(peak)
        return max(self._peaks)


def surplus(idle: int, in_flight: int, recent_peak: int) -> int:
    """Idle connections beyond what the recent peak needs: the busy ones plus these cover it."""
    return max(0, idle + in_flight - recent_peak)
