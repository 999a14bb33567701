"""When a dyno that left the route feed may be stopped: a pure decision with an injected clock.

A dyno taken out at revision D may be stopped (or restarted) once every router following the
route feed has been sent revision D or later, plus a grace for the requests it already had in
flight to finish. A router that is not sent it within the bounded wait (a stuck connection, a
control node that died with followers) is not waited for longer: the dyno is stopped anyway,
and that router's retries on connect failure (H19/H21 only after 10 tries) cover the gap.
With no router connected anywhere there is nobody to wait for: only the grace applies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TakeOutPolicy:
    # After every follower has the revision: requests already sent to the dyno finish.
    grace: float = 2.0
    # The longest a take-out waits for followers to be sent the revision.
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.grace < 0 or self.timeout <= 0:
            raise ValueError("take-out grace must be >= 0 and the timeout > 0 seconds")


@dataclass(frozen=True)
class TakeOutDecision:
    ready: bool
    wake_at: float  # when to look again if not ready (Unix seconds)


class TakeOutTracker:
    """Remembers when each pending take-out was first seen delivered; decides readiness."""

    def __init__(self, policy: TakeOutPolicy) -> None:
        self.policy = policy
        self._delivered_at: dict[str, float] = {}

    def decide(self, dyno_id: str, *, revision: int, started_at: float,
               delivered: int | None, now: float) -> TakeOutDecision:
        """`delivered`: the lowest revision sent to every route follower, None when none follow."""
        if delivered is None or delivered >= revision:
            first = self._delivered_at.setdefault(dyno_id, now)
            due = first + self.policy.grace
        else:
            due = started_at + self.policy.timeout
        return TakeOutDecision(ready=now >= due, wake_at=due)

    def forget(self, dyno_id: str) -> None:
        self._delivered_at.pop(dyno_id, None)

    def retain(self, dyno_ids: set[str]) -> None:
        """Drop what is known about take-outs that ended some other way (app deleted...)."""
        for dyno_id in list(self._delivered_at):
            if dyno_id not in dyno_ids:
                del self._delivered_at[dyno_id]
