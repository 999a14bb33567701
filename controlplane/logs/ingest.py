"""Taking lines in: many `POST /logs` requests, few transactions (group commit).

Each request's lines join a queue and the request waits for its commit; one writer task takes
everything queued (up to `max_batch` lines), stores it in one transaction, answers every
request it carried, and hands the stored lines to the node's hub. While a commit is under way
the next batch gathers, so under load the number of transactions (and fsyncs, on SQLite) stays
about constant while the lines per transaction grow.

An answered POST is durable: a router or dyno manager that got its answer never needs to send
those lines again, and one that got none sends them again (so a control plane killed at the
wrong moment can, at worst, show a batch twice; it never loses an answered one).

The queue is bounded: beyond `max_pending` lines a POST is refused with 503, and the shipper
holds its lines and tries again (dropping and counting them only if its own buffer fills).
The control plane's own lines (`heroku[api]`) are queued without waiting and, past the bound,
dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.store import errors
from controlplane.store.logs import Appended, LogStore, NewLine

log = logging.getLogger(__name__)
# After a failed commit, the writer waits this long before the next (the database is away;
# requests are answered 503 meanwhile and their shippers back off).
RETRY_DELAY = 0.5


@dataclass(frozen=True)
class Ingested:
    """What became of one request's lines."""

    accepted: int
    unknown_apps: tuple[str, ...]  # lines of these were ignored (no such app)
    ignored: int


class _Request:
    __slots__ = ("lines", "count", "future")

    def __init__(self, lines: dict[str, list[NewLine]], count: int,
                 future: asyncio.Future | None) -> None:
        self.lines = lines
        self.count = count
        self.future = future


class LogIngest:
    def __init__(self, store: LogStore, on_stored: Callable[[list[Appended]], None], *,
                 max_pending: int = 100_000, max_batch: int = 5_000) -> None:
        self._store = store
        self._on_stored = on_stored
        self.max_pending = max_pending
        self.max_batch = max_batch
        self._queue: deque[_Request] = deque()
        self._pending = 0  # lines queued, not yet taken by the writer
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Figures.
        self.lines_stored = 0
        self.commits = 0
        self.refused = 0  # lines refused with 503 (queue full)
        self.dropped = 0  # the control plane's own lines dropped (queue full or store failed)

    async def submit(self, lines: dict[str, list[NewLine]], count: int) -> Ingested:
        """Store these lines (by app name); returns once they are committed. Raises
        `errors.Busy` when the queue is full, or the store error that failed the commit."""
        if self._pending + count > self.max_pending:
            self.refused += count
            raise errors.Busy(f"the control plane has {self._pending} log lines waiting to be "
                              "stored; send these again in a moment")
        future = asyncio.get_running_loop().create_future()
        # A request whose client hung up no longer awaits its future: its outcome is not news.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._enqueue(_Request(lines, count, future))
        return await asyncio.shield(future)  # a client that hangs up does not unqueue lines

    def write_nowait(self, app: str, line: NewLine) -> bool:
        """Queue one line without waiting for its commit (the control plane's own lines)."""
        if self._pending + 1 > self.max_pending:
            self.dropped += 1
            return False
        self._enqueue(_Request({app: [line]}, 1, None))
        return True

    def _enqueue(self, request: _Request) -> None:
        self._queue.append(request)
        self._pending += request.count
        self._idle.clear()
        self._wake.set()

    async def flushed(self) -> None:
        """Until everything queued so far was committed (or failed)."""
        await self._idle.wait()

    async def run(self) -> None:
        """The writer, for as long as the node runs."""
        while True:
            if not self._queue:
                self._idle.set()
                await self._wake.wait()
                self._wake.clear()
                continue
            taken = self._take()
            merged: dict[str, list[NewLine]] = {}
            for request in taken:
                for app, lines in request.lines.items():
                    merged.setdefault(app, []).extend(lines)
            try:
                stored = await self._store.append(merged)
            except errors.StoreError as exc:
                self._failed(taken, exc)
                await asyncio.sleep(RETRY_DELAY)
                continue
            except BaseException as exc:
                self._failed(taken, exc if isinstance(exc, Exception) else
                             errors.Unavailable("the control plane is stopping"))
                raise
            self.commits += 1
            self.lines_stored += sum(len(batch.entries) for batch in stored)
            self._answer(taken, {batch.app for batch in stored})
            self._on_stored(stored)

    def _take(self) -> list[_Request]:
        taken: list[_Request] = []
        lines = 0
        while self._queue and (not taken or lines + self._queue[0].count <= self.max_batch):
            request = self._queue.popleft()
            taken.append(request)
            lines += request.count
        self._pending -= lines
        return taken

    @staticmethod
    def _answer(taken: list[_Request], known: set[str]) -> None:
        for request in taken:
            if request.future is None or request.future.done():
                continue
            unknown = tuple(sorted(app for app in request.lines if app not in known))
            ignored = sum(len(request.lines[app]) for app in unknown)
            request.future.set_result(Ingested(request.count - ignored, unknown, ignored))

    def _failed(self, taken: list[_Request], exc: Exception) -> None:
        own = 0
        for request in taken:
            if request.future is None:
                own += request.count
            elif not request.future.done():
                request.future.set_exception(exc)
        if own:
            self.dropped += own
            log.warning("logs: %d of the control plane's own app log lines were not stored: "
                        "%s", own, exc)
