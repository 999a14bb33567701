"""The embedded backend: one SQLite file in WAL mode under $DYNOMESH_HOME.

Why threads and not the event loop: a SQLite statement is a blocking C call, and a commit
with `synchronous=FULL` waits for an fsync. Each connection therefore lives on its own
one-thread executor and the loop only awaits results. There are two connections: one writer
(WAL allows a single writer at a time anyway, so one connection guarded by an asyncio lock
costs nothing) and one reader, so reads never queue behind a commit's fsync. The statements
the store issues are short and indexed, so one statement never holds a thread for long.

Durability: WAL with `synchronous=FULL` fsyncs the log at every commit, so a change the API
acknowledged survives SIGKILL and power loss alike; an interrupted transaction is rolled back
by SQLite's recovery on the next open, so nothing half-written is ever visible.

Scheduling leadership is an exclusive `flock` on `<file>.leader`: one control plane per file is
the rule, but a second one started by mistake stands by instead of fighting the first, and the
kernel releases the lock when the leader's process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from controlplane.store import errors
from controlplane.store.database import (DEFAULT_HISTORY, Database, Leadership, Row,
                                         Transaction)

log = logging.getLogger(__name__)
T = TypeVar("T")
_PLACEHOLDER = re.compile(r"\$(\d+)")
# A writer waits this long for another process's lock before giving up (only one control plane
# should use a SQLite file; this covers tools such as the sqlite3 shell reading it).
BUSY_TIMEOUT_MS = 5000


def translate_error(exc: sqlite3.Error) -> errors.StoreError:
    """The one place sqlite3 exceptions become store errors."""
    message = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        if "UNIQUE" in message or "PRIMARY KEY" in message:
            return errors.Conflict(f"already exists ({message})")
        if "FOREIGN KEY" in message:
            return errors.Conflict(f"refers to something that no longer exists ({message})")
        return errors.Invalid(f"rejected by the database ({message})")
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return errors.Busy(f"the database is busy ({message}); try again")
    if isinstance(exc, (sqlite3.OperationalError, sqlite3.DatabaseError)):
        return errors.Unavailable(f"the SQLite database failed: {message}")
    return errors.StoreError(f"unexpected SQLite error: {message}")


class _ThreadConnection:
    """One sqlite3 connection confined to one thread; `call` runs a function there."""

    def __init__(self, path: Path, *, query_only: bool, name: str) -> None:
        self._path = path
        self._query_only = query_only
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{name}")
        self._conn: sqlite3.Connection | None = None
        self.lock = asyncio.Lock()  # one transaction at a time on this connection

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if self._query_only:
            conn.execute("PRAGMA query_only=ON")
        self._conn = conn

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise translate_error(exc) from exc

    async def open(self) -> None:
        await self.call(self._connect)

    async def close(self) -> None:
        if self._conn is not None:
            await self.call(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    # These run on the connection's thread.
    def run(self, sql: str, args: tuple) -> tuple[int, list[Row]]:
        cursor = self._conn.execute(sql, args)
        try:
            if cursor.description is None:
                return cursor.rowcount, []
            columns = [column[0] for column in cursor.description]
            return cursor.rowcount, [dict(zip(columns, values)) for values in cursor.fetchall()]
        finally:
            cursor.close()

    def run_plain(self, sql: str) -> None:
        self._conn.execute(sql)

    def run_many(self, sql: str, rows) -> None:
        self._conn.executemany(sql, rows)


class SqliteTransaction(Transaction):
    def __init__(self, connection: _ThreadConnection, *, writable: bool, history: int) -> None:
        super().__init__(writable=writable, history=history)
        self._connection = connection

    async def _run(self, sql: str, args: tuple) -> tuple[int, list[Row]]:
        return await self._connection.call(self._connection.run, _PLACEHOLDER.sub(r"?\1", sql), args)

    async def execute(self, sql: str, *args: Any) -> int:
        count, _ = await self._run(sql, args)
        return count

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        _, rows = await self._run(sql, args)
        return rows

    async def insert_many(self, table: str, columns, rows) -> None:
        # One thread hop and one prepared statement for every row.
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        await self._connection.call(self._connection.run_many, sql, rows)


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path | str, *, history: int = DEFAULT_HISTORY) -> None:
        super().__init__(history=history)
        self.path = Path(path)
        self._writer: _ThreadConnection | None = None
        self._reader: _ThreadConnection | None = None

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _ThreadConnection(self.path, query_only=False, name="writer")
        await self._writer.open()  # first: it switches the file to WAL before the reader opens
        self._reader = _ThreadConnection(self.path, query_only=True, name="reader")
        await self._reader.open()

    async def close(self) -> None:
        for connection in (self._reader, self._writer):
            if connection is not None:
                async with connection.lock:
                    await connection.close()
        self._reader = self._writer = None

    @contextlib.asynccontextmanager
    async def _transaction(self, *, writable: bool,
                           lock_revision: bool) -> AsyncIterator[Transaction]:
        # BEGIN IMMEDIATE takes SQLite's write lock at once: that is the revision-row lock of
        # the design (all writers serialised, revisions in commit order). A deferred BEGIN on
        # the reader is a WAL snapshot: one consistent view for the whole read transaction.
        connection = self._writer if writable else self._reader
        if connection is None:
            raise errors.Unavailable("the store is closed")
        async with connection.lock:
            await self._begin(connection, "BEGIN IMMEDIATE" if writable else "BEGIN")
            tx = SqliteTransaction(connection, writable=writable, history=self.history)
            try:
                yield tx
            except BaseException:
                # Shielded: a cancelled request must still leave the connection clean.
                await asyncio.shield(self._rollback_quietly(connection))
                raise
            try:
                await connection.call(connection.run_plain, "COMMIT")
            except errors.StoreError:
                await asyncio.shield(self._rollback_quietly(connection))
                raise

    @classmethod
    async def _begin(cls, connection: _ThreadConnection, sql: str) -> None:
        # The statement runs in the connection's thread whatever happens to the caller: a
        # caller cancelled while it runs (a node stopping its tasks) must not leave the
        # connection inside a transaction, or the next BEGIN on it fails ("cannot start a
        # transaction within a transaction").
        begin = asyncio.ensure_future(connection.call(connection.run_plain, sql))
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            await asyncio.shield(cls._undo_begin(connection, begin))
            raise

    @classmethod
    async def _undo_begin(cls, connection: _ThreadConnection, begin: asyncio.Future) -> None:
        try:
            await begin
        except errors.StoreError:
            return  # it never began
        await cls._rollback_quietly(connection)

    @staticmethod
    async def _rollback_quietly(connection: _ThreadConnection) -> None:
        # The error that made us roll back is the one to report. SQLite may already have
        # rolled back by itself (e.g. after a failed COMMIT), so a failing ROLLBACK is logged.
        try:
            await connection.call(connection.run_plain, "ROLLBACK")
        except errors.StoreError as exc:
            log.info("sqlite: rollback after an error also failed: %s", exc)

    def migration(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        return self._transaction(writable=True, lock_revision=False)

    @contextlib.asynccontextmanager
    async def leadership(self, on_standby: Callable[[], None] = lambda: None
                         ) -> AsyncIterator[Leadership]:
        fd = os.open(f"{self.path}.leader", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("sqlite: another control plane schedules on %s; standing by (one "
                            "control plane per SQLite file)", self.path)
                on_standby()
                await _flock_when_free(fd)
            yield Leadership()
        finally:
            os.close(fd)  # releases the lock


async def _flock_when_free(fd: int) -> None:
    """Block in a daemon thread until the lock is ours (a thread the loop never waits for, so
    a shutdown while standing by does not hang)."""
    loop = asyncio.get_running_loop()
    granted: asyncio.Future[None] = loop.create_future()

    def settle(error: OSError | None) -> None:
        if granted.done():
            return
        if error is None:
            granted.set_result(None)
        else:
            granted.set_exception(error)

    def wait() -> None:
        error = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # the descriptor was closed: we stopped waiting
            error = exc
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:
            log.debug("sqlite: leader lock settled after the event loop closed")

    threading.Thread(target=wait, name="sqlite-leader", daemon=True).start()
    try:
        await granted
    except OSError as exc:
        raise translate_error(sqlite3.OperationalError(f"leader lock failed: {exc}")) from exc
