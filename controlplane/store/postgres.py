"""The distributed backend: PostgreSQL through an asyncpg pool.

Any number of control nodes share one database. Every write transaction starts by locking the
revision row (`SELECT ... FOR UPDATE`), so writers are serialised across all nodes and the
revision is handed out in commit order (READ COMMITTED: each statement after the lock sees
everything committed before it). A bump also sends `NOTIFY dynomesh_revision`, delivered only
if the transaction commits, so other nodes can wake their feeds.

Durability is PostgreSQL's: a commit returns after its WAL record is flushed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from controlplane.store import errors
from controlplane.store.database import DEFAULT_HISTORY, Database, Row, Transaction

log = logging.getLogger(__name__)
NOTIFY_CHANNEL = "dynomesh_revision"
# pg_advisory_xact_lock key that keeps concurrent control nodes out of each other's migrations.
MIGRATION_LOCK_KEY = 0x64796E6F  # "dyno"

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

    async def _on_bump(self, revision: int) -> None:
        await self.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', $1)", str(revision))


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, *, history: int = DEFAULT_HISTORY, min_connections: int = 1,
                 max_connections: int = 10) -> None:
        super().__init__(history=history)
        self.url = url
        self._min = min_connections
        self._max = max_connections
        self._pool: asyncpg.Pool | None = None

    def describe(self) -> str:
        return redact(self.url)

    async def open(self) -> None:
        with _translated():
            self._pool = await asyncpg.create_pool(self.url, min_size=self._min,
                                                   max_size=self._max)

    async def close(self) -> None:
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
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            log.info("postgres: rollback after an error also failed: %s", exc)

    def migration(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        return self._transaction(writable=True, lock_revision=False, migration=True)
