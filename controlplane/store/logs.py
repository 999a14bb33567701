"""The last lines of each app's log stream: appended in batches, pruned in steps, read back.

An app's log is its last `KEEP` lines (Heroku keeps 1500). Each app has a head row holding the
`seq` of its newest line; an append locks it (an upsert), numbers the batch's lines after it,
and inserts them in one bulk step (COPY on PostgreSQL, one prepared statement on SQLite). Old
lines leave in steps: whenever an app's head crosses a multiple of `PRUNE_STEP`, one range
delete on the primary key removes everything below the window, so a line is written once and
deleted once, with one DELETE statement per `PRUNE_STEP` lines. Readers only ever look at the
window (`seq > head - KEEP`), so the few extra rows between prunes never show.

Log writes take no part in the revision order (`Database.write_unordered`): no feed serves
them, and they must never queue behind a deploy's transaction on another control node. On
PostgreSQL, heads are locked in app-name order, so two nodes appending to the same apps
cannot deadlock; the same transaction sends `NOTIFY dynomesh_logs` with the app ids, so
other control nodes can hand the new lines to their tails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from controlplane.store.database import Database

# Heroku's `heroku logs` history: the last 1500 lines of an app.
KEEP = 1500
# Lines an app may hold beyond KEEP between two prunes (one DELETE per this many lines).
PRUNE_STEP = 100
NOTIFY_CHANNEL = "dynomesh_logs"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; past this, "*" (every app).
_MAX_PAYLOAD = 7000
_COLUMNS = ("app_id", "seq", "at", "source", "process", "text")
_SELECT = "SELECT seq, at, source, process, text FROM log_lines"


class NewLine(NamedTuple):
    """A line on its way in: its RFC 5424 timestamp, `app`/`heroku`, `web.1`/`router`, text."""

    at: str
    source: str
    process: str
    text: str


class LogEntry(NamedTuple):
    """A stored line; `seq` orders an app's lines as they were stored."""

    seq: int
    at: str
    source: str
    process: str
    text: str


class Appended(NamedTuple):
    """What one append stored for one app: its lines with their `seq`, in order."""

    app_id: str
    app: str
    entries: list[LogEntry]


def _entry(row) -> LogEntry:
    return LogEntry(int(row["seq"]), row["at"], row["source"], row["process"], row["text"])


def by_time(entries: list[LogEntry]) -> list[LogEntry]:
    """Lines in time order (their timestamps sort as text); equal times keep stored order."""
    return sorted(entries, key=lambda e: (e.at, e.seq))


class LogStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, lines: Mapping[str, Sequence[NewLine]]) -> list[Appended]:
        """Store lines by app name, in one transaction; lines of unknown apps are skipped
        (they are not in the result)."""
        stored: list[Appended] = []
        async with self._db.write_unordered() as tx:
            for name in sorted(lines):  # one lock order for every writer
                batch = lines[name]
                if not batch:
                    continue
                row = await tx.fetchrow(
                    "INSERT INTO log_heads (app_id, seq) "
                    "SELECT id, CAST($2 AS BIGINT) FROM apps WHERE name = $1 "
                    "ON CONFLICT (app_id) DO UPDATE SET seq = log_heads.seq + excluded.seq "
                    "RETURNING app_id, seq", name, len(batch))
                if row is None:
                    continue  # no such app (deleted, or never was)
                app_id, head = row["app_id"], int(row["seq"])
                # Lines of a burst beyond KEEP would be pruned at once: store only the last
                # KEEP (their seqs still count, as if they had been pruned).
                kept = batch[-KEEP:]
                first = head - len(kept) + 1
                entries = [LogEntry(first + i, line.at, line.source, line.process, line.text)
                           for i, line in enumerate(kept)]
                await tx.insert_many("log_lines", _COLUMNS,
                                     [(app_id, *entry) for entry in entries])
                before = head - len(batch)
                if head > KEEP and before // PRUNE_STEP != head // PRUNE_STEP:
                    await tx.execute("DELETE FROM log_lines WHERE app_id = $1 AND seq <= $2",
                                     app_id, head - KEEP)
                stored.append(Appended(app_id, name, entries))
            if stored:
                payload = ",".join(a.app_id for a in stored)
                await tx.notify(NOTIFY_CHANNEL, payload if len(payload) <= _MAX_PAYLOAD else "*")
        return stored

    async def recent(self, app_id: str, limit: int,
                     matches: Callable[[LogEntry], bool] | None = None
                     ) -> tuple[list[LogEntry], int]:
        """The app's `limit` latest lines by time (of those `matches` accepts), in time
        order, and the seq of its newest line (0 for none) in the same snapshot."""
        async with self._db.read() as tx:
            head = int(await tx.fetchval("SELECT seq FROM log_heads WHERE app_id = $1",
                                         app_id) or 0)
            # The window is at most KEEP + PRUNE_STEP rows of one primary-key range: sorting
            # it by time costs less than an index on time would on every insert.
            query = (f"{_SELECT} WHERE app_id = $1 AND seq > $2 "
                     "ORDER BY at DESC, seq DESC")
            if matches is None:
                rows = await tx.fetch(query + " LIMIT $3", app_id, head - KEEP, limit)
                entries = [_entry(r) for r in rows]
            else:
                entries = []
                for row in await tx.fetch(query, app_id, head - KEEP):
                    entry = _entry(row)
                    if matches(entry):
                        entries.append(entry)
                        if len(entries) >= limit:
                            break
        entries.reverse()
        return entries, head

    async def after(self, app_id: str, seq: int,
                    matches: Callable[[LogEntry], bool] | None = None
                    ) -> tuple[list[LogEntry], int]:
        """The app's lines after `seq` that are still kept (of those `matches` accepts), in
        stored order, and the seq of its newest line in the same snapshot."""
        async with self._db.read() as tx:
            head = int(await tx.fetchval("SELECT seq FROM log_heads WHERE app_id = $1",
                                         app_id) or 0)
            rows = await tx.fetch(f"{_SELECT} WHERE app_id = $1 AND seq > $2 ORDER BY seq",
                                  app_id, max(seq, head - KEEP))
        entries = [_entry(r) for r in rows]
        if matches is not None:
            entries = [e for e in entries if matches(e)]
        return entries, head

    async def head(self, app_id: str) -> int:
        async with self._db.read() as tx:
            return int(await tx.fetchval("SELECT seq FROM log_heads WHERE app_id = $1",
                                         app_id) or 0)
