"""One launch of a dyno (a *life*): everything it created, so that it can all be undone, and
the ways it can end (dynomgr/dyno.py runs lives one after another)."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynomgr.events import DynoRef
from dynomgr.markers import DynoMarker
from dynomgr.process import WatchedProcess


class Outcome(enum.Enum):
    STOPPED = "stopped"  # stop() was called; the dyno is down
    DETACHED = "detached"  # detach() was called; the process runs on for the next agent
    CYCLED = "cycled"  # daily restart: start again at once
    CRASHED = "crashed"  # ended unasked: restart after the policy's delay
    FAILED = "failed"  # cannot work until the assignment changes


@dataclass
class Life:
    """Everything one launch created, so that it can all be undone."""

    number: int
    port: int | None = None
    listening: asyncio.Future[None] | None = None  # resolves when the port is listening
    launched: float | None = None  # clock() when the process started
    directory: Path | None = None
    outputs: tuple[Path, ...] | None = None  # the stdout and stderr FIFOs
    marker: DynoMarker | None = None
    process: WatchedProcess | None = None
    exit_logged: bool = False
    start_ticks: int | None = None  # the process's start time (/proc/PID/stat)
    kept: bool = False  # handed over to the next agent: teardown leaves everything as it is
    session: Any = None  # an attached one-off dyno's AttachSession (dynomgr/attach.py)
    hang_up: asyncio.Task | None = None  # stops the dyno when its session ends
    health_poll: asyncio.Task | None = None  # the running health check (readiness.py)

    def record_id(self, ref: DynoRef) -> str:
        return f"{ref.instance}-{self.number}"
