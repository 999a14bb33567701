"""Fan-out: a control node hands each app's new lines to its tails of that app.

Lines reach a node's `LogHub` two ways:

- stored by this node (`stored`, right after the commit): the lines are in hand and, when
  they follow on from what the app's tails were last given (`seq` is dense per app), they are
  delivered at once, with no read;
- stored by another node sharing PostgreSQL (`notified`, from `NOTIFY dynomesh_logs`), or
  when something is missing (lines of another node came in between): the app is marked and a
  catch-up task reads what came after the app's cursor from the store.

Each delivery goes to every tail of the app, sorted by time and rendered once per format
(`Rendered`); a tail never blocks the hub (tail.py), and one that falls too far behind is cut
off and forgotten here. The app's log drains that this node delivers subscribe the same way
(`drains/delivery.py`: `app_id`, `start`, `deliver`, `close`, `cut`), and never block either.
Many tails of a busy app therefore cost one store read at most per batch of lines, and
nothing at all upstream: routers ship each line once, whoever tails.
"""

from __future__ import annotations

import asyncio
import logging

from dynomesh.backoff import BackoffPolicy
from controlplane.logs.lines import Rendered
from controlplane.logs.tail import Tail
from controlplane.store import errors
from controlplane.store.logs import Appended, LogEntry, LogStore, by_time

log = logging.getLogger(__name__)
# After failed catch-up reads (the database is away): 0.5 s, doubling to 5 s, as the feed hub
# does; a tail shows lines at most that late once the database is back.
RETRY = BackoffPolicy(0.5, 5.0)


class LogHub:
    def __init__(self, store: LogStore, *, resync: float | None = None) -> None:
        self._store = store
        # On a shared database, re-read the tailed apps this often: a NOTIFY sent while this
        # node's LISTEN connection was down is lost, and this bounds how late that makes lines.
        self._resync = resync
        self._tails: dict[str, set[Tail]] = {}
        self._cursors: dict[str, int] = {}  # app id -> the newest seq its tails were given
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self.closed = False
        # Figures.
        self.delivered = 0  # lines handed to tails (once per line, not per tail)
        self.cut_off = 0  # tails cut off for falling behind

    @property
    def tails(self) -> int:
        return sum(len(tails) for tails in self._tails.values())

    # -- tails --------------------------------------------------------------------------------

    def add(self, tail: Tail) -> None:
        """Register a tail before its history is read (see Tail.start)."""
        if self.closed:
            tail.close()
            return
        self._tails.setdefault(tail.app_id, set()).add(tail)

    def start(self, tail: Tail, head: int) -> None:
        """The tail's history ends at `head`: from now on it gets what comes after."""
        tail.start(head)
        if tail.cut:
            self.remove(tail)
            return
        if tail.app_id not in self._cursors:
            # The app's first tail: lines stored while its history was read were not handed
            # out (no cursor yet); read them.
            self._cursors[tail.app_id] = head
            self._mark(tail.app_id)

    def remove(self, tail: Tail) -> None:
        tails = self._tails.get(tail.app_id)
        if tails is None:
            return
        tails.discard(tail)
        if not tails:
            del self._tails[tail.app_id]
            self._cursors.pop(tail.app_id, None)
            self._dirty.discard(tail.app_id)

    def close(self) -> None:
        """The node is stopping: every tail ends (clients reconnect, to this node or another)."""
        self.closed = True
        for tails in self._tails.values():
            for tail in tails:
                tail.close()
        self._tails.clear()
        self._cursors.clear()
        self._wake.set()

    # -- new lines ----------------------------------------------------------------------------

    def stored(self, appended: list[Appended]) -> None:
        """Lines this node just committed."""
        for batch in appended:
            app_id = batch.app_id
            if app_id not in self._tails or not batch.entries:
                continue
            cursor = self._cursors.get(app_id)
            if cursor is None:
                continue  # its first tail is reading its history; start() catches up
            if batch.entries[0].seq == cursor + 1:
                self._deliver(app_id, batch.entries)
            elif batch.entries[-1].seq > cursor:
                self._mark(app_id)  # another node's lines came in between: read them all

    def notified(self, payload: str) -> None:
        """`NOTIFY dynomesh_logs` from a node sharing the database: app ids, or `*`."""
        if payload == "*":
            for app_id in self._tails:
                self._mark(app_id)
            return
        for app_id in payload.split(","):
            if app_id in self._tails:
                self._mark(app_id)

    def _mark(self, app_id: str) -> None:
        self._dirty.add(app_id)
        self._wake.set()

    def _deliver(self, app_id: str, entries: list[LogEntry]) -> None:
        """`entries`: the app's lines right after its cursor, in seq order."""
        self._cursors[app_id] = entries[-1].seq
        tails = self._tails.get(app_id)
        if not tails:
            return
        self.delivered += len(entries)
        rendered = Rendered(by_time(entries))
        for tail in list(tails):
            tail.deliver(rendered)
            if tail.cut:
                self.cut_off += 1
                self.remove(tail)

    # -- catching up from the store -------------------------------------------------------------

    async def run(self) -> None:
        """Read what marked apps' tails are missing, for as long as the node runs."""
        retry = RETRY.start()
        while not self.closed:
            if not self._dirty:
                timeout = self._resync if self._resync and self._tails else None
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    self._dirty.update(self._tails)  # the safety net for lost notices
                self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for app_id in dirty:
                cursor = self._cursors.get(app_id)
                if cursor is None:
                    continue  # no tail started on it (any more)
                try:
                    entries, _ = await self._store.after(app_id, cursor)
                except errors.StoreError as exc:
                    delay = retry.next_delay()
                    log.warning("logs: cannot read new lines for tails: %s; trying again in "
                                "%.1fs", exc, delay)
                    self._dirty.update(dirty)
                    await asyncio.sleep(delay)  # back-off while the database is away
                    break
                retry.reset()
                cursor = self._cursors.get(app_id)  # lines may have been delivered meanwhile
                if cursor is None:
                    continue
                entries = [e for e in entries if e.seq > cursor]
                if entries:
                    # From the store, a gap means lines pruned before this node read them.
                    self._deliver(app_id, entries)
