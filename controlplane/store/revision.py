"""The global revision: one monotonic counter bumped with every change a feed serves.

Every write transaction locks the counter row first (`Database.write`), so writers are
serialised and revisions are handed out in commit order. A transaction that records a change
bumps the counter once and writes one `changes` row per (feed, key) it touched; feeds answer
"what changed since R" from those rows and fall back to a snapshot when R is older than the
bounded history.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass


class Feed(str, enum.Enum):
    """What a change row is about. The key is the feed's entry: an app name, a VM id."""

    ROUTES = "routes"            # key: app name; its whole route entry must be re-sent
    ASSIGNMENTS = "assignments"  # key: VM id; its assignment list must be re-sent
    # key: app name; what decides the app's dynos changed (a feature, a stopped dyno, a
    # preboot dyno's state). No client follows it: it wakes the scheduler on every node.
    FORMATION = "formation"


@dataclass(frozen=True)
class Change:
    revision: int
    feed: Feed
    key: str


@dataclass(frozen=True)
class ChangeLog:
    """Changes after `since` up to `revision` (the current revision when read)."""

    since: int
    revision: int
    changes: tuple[Change, ...]


class RevisionSignal:
    """Wakes waiters in this process when a commit advanced the revision.

    Feeds wait here instead of polling; with PostgreSQL, a LISTEN on the `dynomesh_revision`
    channel (sent in the same transaction) carries the same news to other control nodes.
    """

    def __init__(self) -> None:
        self._revision = 0
        self._changed = asyncio.Condition()

    @property
    def revision(self) -> int:
        return self._revision

    async def advance(self, revision: int) -> None:
        if revision <= self._revision:
            return
        async with self._changed:
            self._revision = max(self._revision, revision)
            self._changed.notify_all()

    async def wait_beyond(self, revision: int) -> int:
        """Return the first known revision greater than `revision` (waiting for it if need be)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._revision > revision)
            return self._revision
