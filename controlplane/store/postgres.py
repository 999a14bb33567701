"""The distributed backend: PostgreSQL through an asyncpg pool.

Any number of control nodes share one database. Every write transaction starts by locking the
revision row (`SELECT ... FOR UPDATE`), so writers are serialised across all nodes and the
revision is handed out in commit order (READ COMMITTED: each statement after the lock sees
everything committed before it). A bump also sends `NOTIFY dynomesh_revision`, delivered only
if the transaction commits, so other nodes can wake their feeds.

Durability is PostgreSQL's: a commit returns after its WAL record is flushed.

Two dedicated connections sit beside the pool: one LISTENs (other nodes' revisions wake this
node's feeds; other notices wake its scheduler), reconnecting with back-off and catching up on
the revision when it does; and, while this node schedules or waits to, one holds (or waits
for) the scheduler's advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from dynomesh.backoff import BackoffPolicy
from dynomesh.tasks import cancel_and_wait
from controlplane.store import errors
from controlplane.store.database import (DEFAULT_HISTORY, Database, Leadership, Row,
                                         Transaction)

log = logging.getLogger(__name__)
NOTIFY_CHANNEL = "dynomesh_revision"
# pg_advisory_xact_lock key that keeps concurrent control nodes out of each other's migrations.
MIGRATION_LOCK_KEY = 0x64796E6F  # "dyno"
# pg_advisory_lock key held by the control node that runs the scheduler.
LEADER_LOCK_KEY = 0x64796E73  # "dyns"
# Reconnecting the LISTEN connection: 0.1 s, doubling, at most 5 s, with jitter (every node
# lost the same server at once; they should not all come back at once).
RECONNECT = BackoffPolicy(0.1, 5.0, jitter=0.25)

_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError, asyncpg.InvalidCatalogNameError,
                asyncpg.InvalidAuthorizationSpecificationError)
_BUSY = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError,
         asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError)


def translate_error(exc: BaseException) -> errors.StoreError:
    """The one place asyncpg exceptions become store errors."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, asyncpg.UniqueViolationError):
        return errors.Conflict(f"already exists ({message})")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return errors.Conflict(f"refers to something that no longer exists ({message})")
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return errors.Invalid(f"rejected by the database ({message})")
    if isinstance(exc, _BUSY):
        return errors.Busy(f"the database is busy ({message}); try again")
    if isinstance(exc, _UNAVAILABLE):
        return errors.Unavailable(f"PostgreSQL is unavailable: {message}")
    return errors.StoreError(f"unexpected PostgreSQL error: {message}")


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except errors.StoreError:
        raise
    except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
        raise translate_error(exc) from exc


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresTransaction(Transaction):
    def __init__(self, conn: asyncpg.Connection, *, writable: bool, history: int) -> None:
        super().__init__(writable=writable, history=history)
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        with _translated():
            status = await self._conn.execute(sql, *args)
        # asyncpg returns the command tag, e.g. "UPDATE 3" or "INSERT 0 1".
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _translated():
            return list(await self._conn.fetch(sql, *args))

    async def insert_many(self, table: str, columns, rows) -> None:
        # COPY: one round trip and no per-row statement, within this transaction.
        with _translated():
            await self._conn.copy_records_to_table(table, records=rows, columns=list(columns))

    async def _on_bump(self, revision: int) -> None:
        await self.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', $1)", str(revision))

    async def notify(self, channel: str, payload: str) -> None:
        await self.execute("SELECT pg_notify($1, $2)", channel, payload)


class _Listener:
    """A dedicated LISTEN connection that comes back after it drops."""

    def __init__(self, url: str, on_connected: Callable[[], Awaitable[None]],
                 rng: random.Random | None = None) -> None:
        self._url = url
        self._rng = rng or random.Random()
        self._on_connected = on_connected
        self._callbacks: dict[str, list[Callable[[str], None]]] = {}
        self._conn: asyncpg.Connection | None = None
        self._dropped = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._keep_connected(), name="pg-listen")

    async def _connect(self) -> None:
        with _translated():
            conn = await asyncpg.connect(self._url)
        try:
            for channel in self._callbacks:
                with _translated():
                    await conn.add_listener(channel, self._dispatch)
        except BaseException:
            conn.terminate()
            raise
        self._dropped.clear()
        conn.add_termination_listener(lambda _: self._dropped.set())
        self._conn = conn

    def _dispatch(self, conn, pid, channel: str, payload: str) -> None:
        for callback in self._callbacks.get(channel, ()):
            callback(payload)

    async def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        first = channel not in self._callbacks
        self._callbacks.setdefault(channel, []).append(callback)
        if first and self._conn is not None and not self._conn.is_closed():
            with _translated():
                await self._conn.add_listener(channel, self._dispatch)

    async def _keep_connected(self) -> None:
        backoff = RECONNECT.start(self._rng)
        while True:
            await self._dropped.wait()
            log.warning("postgres: the LISTEN connection dropped; reconnecting")
            while True:
                await asyncio.sleep(backoff.next_delay())  # back-off, not polling
                try:
                    await self._connect()
                    await self._on_connected()  # notices sent while away are lost: catch up
                    break
                except errors.StoreError as exc:
                    log.warning("postgres: LISTEN reconnect failed: %s", exc)
            backoff.reset()
            log.info("postgres: LISTEN connection back")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        if self._conn is not None:
            with contextlib.suppress(*_UNAVAILABLE, asyncpg.PostgresError):
                await self._conn.close(timeout=5)


class PostgresDatabase(Database):
    dialect = "postgresql"
    shared = True

    def __init__(self, url: str, *, history: int = DEFAULT_HISTORY, min_connections: int = 1,
                 max_connections: int = 10) -> None:
        super().__init__(history=history)
        self.url = url
        self._min = min_connections
        self._max = max_connections
        self._pool: asyncpg.Pool | None = None
        self._listener: _Listener | None = None
        self._pending: set[asyncio.Task] = set()

    def describe(self) -> str:
        return redact(self.url)

    async def open(self) -> None:
        with _translated():
            self._pool = await asyncpg.create_pool(self.url, min_size=self._min,
                                                   max_size=self._max)
        self._listener = _Listener(self.url, self._catch_up)
        await self._listener.subscribe(NOTIFY_CHANNEL, self._on_revision_notice)
        try:
            await self._listener.start()
        except BaseException:
            await self.close()
            raise

    def _on_revision_notice(self, payload: str) -> None:
        if not payload.isdigit():
            log.warning("postgres: ignored a malformed revision notice %r", payload)
            return
        task = asyncio.create_task(self.signal.advance(int(payload)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _catch_up(self) -> None:
        async with self.read() as tx:
            await self.signal.advance(await tx.current_revision())

    async def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        if self._listener is None:
            raise errors.Unavailable("the store is closed")
        await self._listener.subscribe(channel, callback)

    @contextlib.asynccontextmanager
    async def leadership(self, on_standby: Callable[[], None] = lambda: None
                         ) -> AsyncIterator[Leadership]:
        with _translated():
            conn = await asyncpg.connect(self.url)
        held = Leadership()
        conn.add_termination_listener(lambda _: held.lost.set())
        try:
            with _translated():
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY):
                    on_standby()
                    # Blocks in the server until the holder's session ends: no polling.
                    await conn.execute("SELECT pg_advisory_lock($1)", LEADER_LOCK_KEY)
            yield held
        finally:
            # Ending the session releases the lock; terminate if a clean close cannot be had.
            try:
                await conn.close(timeout=5)
            except asyncio.CancelledError:
                conn.terminate()
                raise
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                log.info("postgres: closing the leader connection failed (%s); terminating",
                         exc or type(exc).__name__)
                conn.terminate()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._pool is not None:
            with _translated():
                await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _transaction(self, *, writable: bool, lock_revision: bool,
                           migration: bool = False) -> AsyncIterator[Transaction]:
        if self._pool is None:
            raise errors.Unavailable("the store is closed")
        with _translated():
            conn = await self._pool.acquire()
        try:
            # Reads see one snapshot for the whole transaction (a feed's snapshot at revision R
            # must not mix states); writes run in READ COMMITTED after locking the revision row,
            # so each statement sees everything committed before the lock was granted.
            transaction = (conn.transaction() if writable else
                           conn.transaction(isolation="repeatable_read", readonly=True))
            with _translated():
                await transaction.start()
            tx = PostgresTransaction(conn, writable=writable, history=self.history)
            try:
                if migration:
                    await tx.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                if lock_revision:
                    await tx.execute("SELECT value FROM revision WHERE id = 1 FOR UPDATE")
                yield tx
            except BaseException:
                await self._rollback_quietly(transaction)
                raise
            with _translated():
                await transaction.commit()
        finally:
            await self._pool.release(conn)

    @staticmethod
    async def _rollback_quietly(transaction) -> None:
        # The error that made us roll back is the one to report; a lost connection rolls the
        # transaction back on the server anyway.
        try:
            await transaction.rollback()
        except (asyncpg.PostgresError, asyncpg.InternalClientError, *_UNAVAILABLE) as exc:
            # InternalClientError: a cancelled query left the connection busy; the pool
            # discards such a connection when it is released.
            log.info("postgres: rollback after an error also failed: %s", exc)

    def migration(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        return self._transaction(writable=True, lock_revision=False, migration=True)
