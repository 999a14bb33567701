"""Typed store errors: the only exceptions that leave the store.

The backends translate their driver's exceptions (sqlite3, asyncpg) into these, in one place
each (`sqlite.translate_error`, `postgres.translate_error`); the domain layer raises them for
rules it checks itself; the API maps each class to one HTTP status.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class; the message is fit to show to a user."""


class NotFound(StoreError):
    """The thing named does not exist (app, release, domain, token...)."""


class Conflict(StoreError):
    """The change collides with existing state (a taken name, a hostname on another app)."""


class Invalid(StoreError):
    """The change breaks a rule of the data (a release status that cannot follow the current one)."""


class Busy(StoreError):
    """The database could not take the change now (lock timeout, serialization failure); retry."""


class Unavailable(StoreError):
    """The database cannot be reached or failed underneath us (connection lost, disk error)."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer dynomesh than this one."""


class NotLeader(StoreError):
    """Another control node claimed scheduling since this one did (the epoch moved on)."""


class HistoryExpired(StoreError):
    """Changes since the requested revision were pruned: the caller needs a fresh snapshot."""

    def __init__(self, requested: int, oldest_available: int, current: int) -> None:
        super().__init__(
            f"changes after revision {requested} are no longer kept "
            f"(kept: after {oldest_available} up to {current}); take a fresh snapshot")
        self.requested = requested
        self.oldest_available = oldest_available
        self.current = current
