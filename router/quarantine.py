"""Passive health: dynos that failed a connect are skipped for a while by this router.

Heroku's router quarantines a dyno that refused a connection or did not accept one within the
connect timeout, for 5 seconds, in that router only. `Quarantine` is that policy as a small pure
object: it records failures with the time they happened and filters candidates, reading the
time from an injected clock, so its tests assert exact behaviour without sleeping.

When every candidate is quarantined the one quarantined longest ago is still tried: a request
should not fail at once because all dynos hiccuped a moment ago (it may have recovered first).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


class Quarantine:
    __slots__ = ("duration", "members", "_clock")

    def __init__(self, duration: float, clock: Callable[[], float]) -> None:
        self.duration = duration
        self._clock = clock
        # member -> when it failed. Read directly by the request path: empty means "skip me".
        self.members: dict[Hashable, float] = {}

    def fail(self, member: Hashable) -> None:
        """`member` refused or timed out a connection just now."""
        self.members.pop(member, None)  # re-insert: the dict stays ordered by failure time
        self.members[member] = self._clock()

    def release(self, member: Hashable) -> None:
        """`member` accepted a connection: it is healthy again."""
        self.members.pop(member, None)

    def __contains__(self, member: Hashable) -> bool:
        failed = self.members.get(member)
        return failed is not None and self._clock() - failed < self.duration

    def expire(self) -> int:
        """Forget members whose quarantine is over; -> how many are left."""
        members = self.members
        if members:
            now = self._clock()
            for member in [m for m, failed in members.items() if now - failed >= self.duration]:
                del members[member]
        return len(members)

    def usable(self, candidates: Sequence[T]) -> list[T]:
        """The candidates not in quarantine; if all are, the one quarantined longest ago."""
        members = self.members
        now = self._clock()
        duration = self.duration
        healthy, oldest, oldest_at = [], None, 0.0
        for candidate in candidates:
            failed = members.get(candidate)
            if failed is None or now - failed >= duration:
                healthy.append(candidate)
            elif oldest is None or failed < oldest_at:
                oldest, oldest_at = candidate, failed
        if healthy or oldest is None:
            return healthy
        return [oldest]
