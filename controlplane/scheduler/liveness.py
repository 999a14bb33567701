"""When a silent dyno manager counts as lost: a pure decision with an injected clock.

A VM whose last heartbeat is older than the agent timeout is lost and its dynos are placed
elsewhere. But a control plane that just started (or just took over scheduling, or just got
its database back) has not been receiving heartbeats while it was away: every VM would look
silent. So nothing is declared lost until the start-up grace has passed since it began
watching, which gives every dyno manager time to reconnect and heart-beat.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AgentLiveness:
    # Dyno managers heart-beat every 5 s; three missed beats make a VM lost.
    timeout: float = 15.0
    # Reconnects back off up to 5 s, then a heartbeat follows: two timeouts leave ample room.
    grace: float = 30.0

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.grace < 0:
            raise ValueError("the agent timeout must be > 0 and the grace >= 0 seconds")

    def is_lost(self, heartbeat_at: float, *, now: float, watching_since: float) -> bool:
        return now >= watching_since + self.grace and now >= heartbeat_at + self.timeout

    def check_at(self, heartbeat_at: float, *, watching_since: float) -> float:
        """The earliest time this VM could become lost if it stays silent."""
        return max(heartbeat_at + self.timeout, watching_since + self.grace)
