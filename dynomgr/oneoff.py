"""The one-off part of `Dyno` (`dynomesh run`, a release phase): it runs its command once.

A one-off dyno is never restarted: its command exiting, its time limit, a failed launch or a
stop all end it in `down`, and that last report carries the command's exit status (None when
it did not exit by itself) and the tail of its output, which a release phase's release keeps.
Detached, its output goes to the app's log like any dyno's (`app[run.1]`); attached, its
streams are its session's (dynomgr/attach.py, dynomgr/attached.py), opened before the process
starts, and a session that ends stops the dyno (Heroku: the dyno goes when its caller does).
"""

from __future__ import annotations

import asyncio
from collections import deque

from dynomgr.attach import AttachFailed, AttachSession
from dynomgr.errors import LaunchError
from dynomgr.life import Life, Outcome
from dynomgr.process import exit_status
from dynomgr.state import DynoState

# The tail of a one-off dyno's output that its end report carries.
TAIL_LINES = 40
TAIL_CHARS = 4000


class OutputTail:
    """The last lines of a dyno's output, bounded in lines and characters."""

    def __init__(self, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> None:
        self._lines: deque[str] = deque(maxlen=lines)
        self._chars = chars

    def add(self, line: str) -> None:
        self._lines.append(line[-self._chars:])

    def text(self) -> str:
        """The kept lines, from the first whole line that fits."""
        joined = "".join(f"{line}\n" for line in self._lines)
        if len(joined) <= self._chars:
            return joined
        cut = joined[-self._chars:]
        start = cut.find("\n")
        return cut[start + 1:] if 0 <= start < len(cut) - 1 else cut


class OneOffRun:
    """Mixed into `Dyno`: what differs for a one-off dyno."""

    def _one_off_init(self) -> None:
        spec = self.assignment.one_off
        self.exit_status: int | None = None
        self.output_tail: str | None = None  # set once a one-off dyno ended
        self._tail = OutputTail() if spec is not None and spec.attach is None else None

    @property
    def is_one_off(self) -> bool:
        return self.assignment.one_off is not None

    def _one_off_ending(self) -> dict:
        """What a one-off dyno's `down` report adds: its exit status and output tail."""
        if not self.is_one_off:
            return {}
        self.output_tail = self._tail.text() if self._tail is not None else ""
        return {"exit_status": self.exit_status, "output": self.output_tail}

    def _ran_before(self) -> bool:
        """A one-off dyno a crashed predecessor had launched (its record says so)."""
        interrupted = self.services.interrupted_one_offs
        if not self.is_one_off or self.assignment.id not in interrupted:
            return False
        interrupted.discard(self.assignment.id)
        return True

    def _not_again(self) -> Outcome:
        """It ran once already, under the dyno manager that crashed: it ends here, `down`
        without an exit status (Heroku: a one-off dyno does not outlive its host)."""
        why = "its dyno manager stopped while it ran; a one-off dyno is not run again"
        self._transition(DynoState.STARTING)
        self._say(f"Not starting: {why}")
        self._stop_reason = why
        self._transition(DynoState.DOWN, reason=why)
        return Outcome.STOPPED

    def _one_off_timeout(self, life: Life) -> float:
        """Seconds left of a one-off dyno's time limit (counted from its launch)."""
        return max(0.0, life.launched + self.assignment.one_off.timeout - self.services.clock())

    async def _open_session(self, life: Life) -> None:
        """Join the caller's session before anything starts (an attached one-off dyno)."""
        spec = self.assignment.one_off
        if spec is None or spec.attach is None:
            return
        try:
            life.session = await self.services.attach(spec.attach)
        except AttachFailed as exc:
            raise LaunchError(str(exc)) from exc
        life.hang_up = asyncio.create_task(self._hang_up_when_gone(life.session),
                                           name=f"session of {self.app} {self.name}")

    async def _hang_up_when_gone(self, session: AttachSession) -> None:
        await session.closed.wait()
        if not self._stop_requested.is_set() and self.pid is not None:
            self._stop_reason = "Stopping: its session ended"
            self._say(self._stop_reason)
            self._stop_requested.set()

    async def _close_session(self, life: Life) -> None:
        """Tell the caller how the command ended (its status, or why it did not run)."""
        if life.hang_up is not None:
            life.hang_up.cancel()
        if life.session is None:
            return
        process = life.process
        code = process.exited.result() if process is not None and process.exited.done() else None
        status = exit_status(code) if code is not None else None
        await life.session.finish(status, None if status is not None else self.reason)
        life.session = None
