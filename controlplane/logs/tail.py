"""One `--tail` session's share of an app's new lines: filtered, rendered, bounded.

The hub hands every delivery to each tail of the app without waiting for any of them: a tail
only appends to its own list and sets its event; the response writer takes the list when it
can. A tail whose reader still has more than `limit` lines waiting when more come is cut off
(Heroku's L11): its pending lines are dropped, it takes no more, and its writer ends the
response with a last line saying why, so one slow terminal never holds more than `limit` lines
and one delivery, nor anyone else's lines.

Until `start(after)` a tail keeps what it is given unfiltered: it joined the hub before its
history was read, so nothing between the history and the first delivery can be missed, and
`start` then drops what the history already showed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from controlplane.logs.lines import LogFilter, Rendered


class Tail:
    __slots__ = ("app_id", "filter", "json_format", "limit", "after", "pending", "cut",
                 "closed", "behind", "_early", "_event", "_on_cut")

    def __init__(self, app_id: str, log_filter: LogFilter, *, json_format: bool, limit: int,
                 on_cut: Callable[[], None] = lambda: None) -> None:
        self.app_id = app_id
        self.filter = log_filter
        self.json_format = json_format
        self.limit = limit
        self.after: int | None = None  # the newest seq shown (None: not started)
        self.pending: list[bytes] = []
        self.cut = False  # fell too far behind: the hub forgets it, the writer ends
        self.closed = False  # the control node is stopping
        self.behind = 0  # lines pending when it was cut off
        self._early: list[Rendered] = []
        self._event = asyncio.Event()
        self._on_cut = on_cut

    def start(self, after: int) -> None:
        """The history showed lines up to `after`; show what came since."""
        self.after = after
        early, self._early = self._early, []
        for rendered in early:
            self.deliver(rendered)
        if self.pending:
            self._event.set()

    def deliver(self, rendered: Rendered) -> None:
        """New lines of the app (a contiguous run of seqs, in time order). Never blocks."""
        if self.cut or self.closed:
            return
        if self.after is None:
            waiting = sum(len(r.entries) for r in self._early)
            if waiting > self.limit:
                self._cut_off(waiting + len(rendered.entries))
                self._early.clear()
                return
            self._early.append(rendered)
            return
        pending = self.pending
        if len(pending) > self.limit:
            # More than `limit` lines were still waiting for the reader when more came.
            self._cut_off(len(pending) + len(rendered.entries))
            pending.clear()
            return
        after = self.after
        matches = self.filter.matches if not self.filter.everything else None
        lines = rendered.lines(self.json_format)
        newest = after
        for index, entry in enumerate(rendered.entries):
            seq = entry.seq
            if seq <= after:
                continue
            if seq > newest:
                newest = seq
            if matches is None or matches(entry):
                pending.append(lines[index])
        self.after = newest
        self._event.set()

    def _cut_off(self, behind: int) -> None:
        self.behind = behind
        self.cut = True
        self._on_cut()
        self._event.set()

    def close(self) -> None:
        self.closed = True
        self._event.set()

    def take(self) -> bytes:
        data = b"".join(self.pending)
        self.pending.clear()
        self._event.clear()
        return data

    async def wait(self, timeout: float) -> bool:
        """True when there is something to do (lines, a cut, a close); False on timeout."""
        if self.pending or self.cut or self.closed:
            return True
        self._event.clear()  # set by a delivery this tail's filter kept nothing of
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        return True
