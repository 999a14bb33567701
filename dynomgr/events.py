"""What the dyno manager tells the world: state changes and log lines.

Both are plain immutable values carrying everything a reporter needs, so that printing them to
stdout (standalone) and posting them to the control plane (when following its feed) are two
`Reporter`s over the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dynomgr.state import DynoState


@dataclass(frozen=True, slots=True)
class DynoRef:
    """Which dyno: enough to route a line into the right app's log."""

    app: str
    name: str  # "web.1"
    type: str  # "web"
    release: int
    instance: str  # unique per dyno object on this agent; a restart keeps it, a new release not
    id: str | None = None  # the control plane's dyno id, when the assignment has one


@dataclass(frozen=True, slots=True)
class StateChange:
    dyno: DynoRef
    old: DynoState
    new: DynoState
    at: float  # Unix time of the change, seconds
    address: str | None = None  # "host:port" for web dynos that have a port
    pid: int | None = None  # the dyno's main process, while it has one
    reason: str | None = None  # human words: "Boot timeout", "Process exited with status 1"
    error_code: str | None = None  # Heroku error code when one applies: "R10", "R15", ...
    restarts: int = 0  # crash restarts of this dyno so far
    # A one-off dyno's end (to `down`): its exit status (None: it did not exit by itself)
    # and the tail of its output, which a release phase's release keeps.
    exit_status: int | None = None
    output: str | None = None
    # A running web dyno that failed its health check N times in a row: why (None: healthy).
    # A change from `up` to `up` is a change of health only (dynomgr/health.py).
    unhealthy: str | None = None

    def words(self) -> str:
        """Heroku's wording of the change; for a change of health only, ours."""
        if self.old is self.new:
            if self.unhealthy is not None:
                return (f"Health check failed: {self.unhealthy}; out of the routers' tables "
                        "until a check passes")
            return "Health check passed; back in the routers' tables"
        return f"State changed from {self.old} to {self.new}"

    def message(self) -> str:
        """Heroku's wording, plus the address when there is one (routers want it)."""
        text = self.words()
        if self.address is not None and self.new in (DynoState.STARTING, DynoState.UP):
            text += f" ({self.address})"
        return text


@dataclass(frozen=True, slots=True)
class LogLine:
    dyno: DynoRef
    source: str  # "app" for the dyno's own output, "heroku" for the platform's lines about it
    text: str
    at: float  # Unix time the line was read or made, seconds


class Reporter(Protocol):
    """Where state changes and log lines go. Calls never block and never raise."""

    def state_changed(self, change: StateChange) -> None: ...

    def log(self, line: LogLine) -> None: ...

    async def aclose(self) -> None: ...
