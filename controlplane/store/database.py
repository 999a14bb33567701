"""The database layer under the store: transactions, SQL execution, the revision counter.

One interface, two backends (`sqlite.SqliteDatabase`, `postgres.PostgresDatabase`). SQL is
written once, in PostgreSQL's `$1` placeholder style; the SQLite backend rewrites it to `?1`.
Both speak the same schema (see `migrations.py`), which keeps to types both understand: TEXT,
INTEGER/BIGINT, booleans as 0/1, JSON as TEXT, timestamps as ISO 8601 UTC text.

Driver exceptions never leave a backend: each translates them into `store.errors` classes.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from controlplane.store.revision import Change, ChangeLog, Feed, RevisionSignal
from controlplane.store import errors

Row = Mapping[str, Any]

# How many revisions of change rows to keep for "changes since R"; older clients re-snapshot.
DEFAULT_HISTORY = 10_000
# Pruning runs inside write transactions, once every this many revisions.
PRUNE_EVERY = 64
# Bound the number of parameters of one `IN (...)` list (SQLite and PostgreSQL both take more).
IN_CHUNK = 500


def placeholders(count: int, start: int = 1) -> str:
    """`$1, $2, ...` for an `IN (...)` list of `count` values."""
    return ", ".join(f"${i}" for i in range(start, start + count))


async def fetch_for(tx: "Transaction", sql: str, column: str, values: Sequence[str] | None,
                    *, order: str = "") -> list[Row]:
    """Rows of `sql` (which ends in a WHERE clause) whose `column` is one of `values` (all if
    None), asked in chunks of `IN_CHUNK` values."""
    suffix = f" ORDER BY {order}" if order else ""
    if values is None:
        return await tx.fetch(f"{sql} AND TRUE{suffix}")
    rows: list[Row] = []
    for i in range(0, len(values), IN_CHUNK):
        chunk = list(values[i:i + IN_CHUNK])
        rows += await tx.fetch(f"{sql} AND {column} IN ({placeholders(len(chunk))}){suffix}",
                               *chunk)
    return rows


class Transaction(abc.ABC):
    """One database transaction. Only `Database.read()` / `Database.write()` create these."""

    def __init__(self, *, writable: bool, history: int) -> None:
        self.writable = writable
        self._history = history
        self.revision: int | None = None  # set once this transaction bumped the counter
        self.ordered = writable  # False in `Database.write_unordered()`: no revision here
        self._recorded: set[tuple[Feed, str]] = set()

    @abc.abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return the number of rows it changed."""

    @abc.abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Run a query; return all its rows."""

    async def insert_many(self, table: str, columns: Sequence[str],
                          rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows in one step (bulk paths: log lines). Backends override this with
        their fast path; `table` and `columns` are the caller's constants, never user input."""
        sql = (f"INSERT INTO {table} ({', '.join(columns)}) "
               f"VALUES ({placeholders(len(columns))})")
        for row in rows:
            await self.execute(sql, *row)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    async def record_change(self, feed: Feed, key: str) -> int:
        """Note that `key` of `feed` changed in this transaction; return this transaction's revision.

        The first call bumps the global revision (the counter row is already locked by
        `Database.write`); later calls in the same transaction share that revision.
        """
        if not self.writable or not self.ordered:
            raise RuntimeError("record_change() needs a write transaction from write()")
        if self.revision is None:
            self.revision = int(await self.fetchval(
                "UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value"))
            await self._on_bump(self.revision)
            if self.revision % PRUNE_EVERY == 0:
                await self._prune(self.revision)
        if (feed, key) not in self._recorded:
            self._recorded.add((feed, key))
            await self.execute("INSERT INTO changes (revision, feed, key) VALUES ($1, $2, $3)",
                               self.revision, feed.value, key)
        return self.revision

    async def _on_bump(self, revision: int) -> None:
        """Backend hook, called in the transaction right after the counter moved."""

    async def notify(self, channel: str, payload: str) -> None:
        """Tell the other control nodes something when this transaction commits (PostgreSQL
        NOTIFY; a single-node backend has nobody to tell)."""

    async def _prune(self, revision: int) -> None:
        horizon = revision - self._history
        if horizon <= 0:
            return
        await self.execute("DELETE FROM changes WHERE revision <= $1", horizon)
        await self.execute(
            "UPDATE revision SET pruned_through = $1 WHERE id = 1 AND pruned_through < $1", horizon)

    async def current_revision(self) -> int:
        return int(await self.fetchval("SELECT value FROM revision WHERE id = 1"))

    async def changes_since(self, feed: Feed, since: int) -> ChangeLog:
        """Changes to `feed` after revision `since`, or `HistoryExpired` if they were pruned."""
        row = await self.fetchrow("SELECT value, pruned_through FROM revision WHERE id = 1")
        current, pruned = int(row["value"]), int(row["pruned_through"])
        if since < pruned or since > current:
            raise errors.HistoryExpired(since, pruned, current)
        rows = await self.fetch(
            "SELECT revision, key FROM changes WHERE feed = $1 AND revision > $2 "
            "ORDER BY revision, key", feed.value, since)
        changes = tuple(Change(int(r["revision"]), feed, r["key"]) for r in rows)
        return ChangeLog(since=since, revision=current, changes=changes)


class Leadership:
    """Held while this node is the one scheduler; `lost` is set if the hold ends under us."""

    def __init__(self) -> None:
        self.lost = asyncio.Event()


class Database(abc.ABC):
    """A connection to one dynomesh database; see the module docstring."""

    dialect: str = ""
    shared: bool = False  # True when several control nodes may use the database at once

    def __init__(self, *, history: int = DEFAULT_HISTORY) -> None:
        if history < PRUNE_EVERY:
            raise ValueError(f"history must keep at least {PRUNE_EVERY} revisions")
        self.history = history
        self.signal = RevisionSignal()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (creating the database file if need be). Migrations are separate."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish in-flight work and disconnect."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the data lives, for logs (never a password)."""

    @abc.abstractmethod
    def _transaction(self, *, writable: bool,
                     lock_revision: bool) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """BEGIN (locking the revision row if asked) ... COMMIT, or ROLLBACK on any error."""

    @abc.abstractmethod
    def migration(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """A write transaction that keeps other control nodes out of migrations until it ends.

        It does not lock the revision row: on a fresh database that table does not exist yet.
        """

    async def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call `callback(payload)` for notices other control nodes send on `channel`."""

    @contextlib.asynccontextmanager
    async def leadership(self, on_standby: Callable[[], None] = lambda: None
                         ) -> AsyncIterator[Leadership]:
        """Wait until this node may schedule; hold that until the block ends.

        A single-node backend leads at once. PostgreSQL holds a session advisory lock on a
        dedicated connection, so the lock ends when this process or its connection dies;
        `on_standby` is called if another node holds it and this one starts waiting.
        """
        yield Leadership()

    def read(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """A read-only transaction: one consistent view of the data."""
        return self._transaction(writable=False, lock_revision=False)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        """A read-write transaction; writers are serialised on the revision row.

        Acknowledge a change to a client only after this block exits: the commit is durable
        by then (WAL fsync on SQLite with synchronous=FULL; PostgreSQL's commit).
        """
        async with self._transaction(writable=True, lock_revision=True) as tx:
            yield tx
        if tx.revision is not None:
            await self.signal.advance(tx.revision)

    @contextlib.asynccontextmanager
    async def write_unordered(self) -> AsyncIterator[Transaction]:
        """A write transaction outside the revision order, for data no feed serves (log lines).

        It does not lock the revision row, so it never waits behind feed writers on any
        control node, nor they behind it; it cannot `record_change`. (SQLite still has one
        writer at a time.)
        """
        async with self._transaction(writable=True, lock_revision=False) as tx:
            tx.ordered = False
            yield tx
