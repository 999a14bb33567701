"""Log drains: which exist for each app, and which control node delivers each (its lease).

A drain is delivered by one control node at a time. A node claims drains that nobody holds
or whose lease ran out (`claim`), renews its leases every few seconds with how far it got
(`renew`: the seq of the newest line sent and the delivery totals), and gives them back when
it stops (`release`). Each claim bumps the drain's `lease_epoch`; a renewal that names an old
epoch, another owner or a removed drain changes nothing, and the node learns it lost the drain.
The claimant resumes after the drain's `cursor`, so a drain moves between nodes without a line
sent twice (a node that died sends again, at most, what it sent since its last renewal).

Lease times are Unix seconds from the nodes' clocks (as the scheduler's heartbeat deadlines
are): nodes must agree on the time to within the renewal interval.

Drain writes take no part in the revision order (no feed serves drains); a change sends
`NOTIFY dynomesh_drains` so that other control nodes claim or let go at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import NamedTuple

from controlplane.drains.urls import canonical, masked
from controlplane.store import errors
from controlplane.store.apps import require_app
from controlplane.store.database import Database, Transaction
from controlplane.store.models import App, Drain, DrainStats, now_iso

NOTIFY_CHANNEL = "dynomesh_drains"
# Heroku allows a handful of drains per app; each costs a buffer and a connection.
MAX_PER_APP = 10
_SELECT = "SELECT drains.*, apps.name AS app FROM drains JOIN apps ON apps.id = drains.app_id"


class HeldLease(NamedTuple):
    """What a node says about a drain it delivers, at each renewal."""

    drain_id: str
    epoch: int
    cursor: int  # the seq of the app's newest line sent
    stats: DrainStats  # totals since the drain was added


def new_token() -> str:
    """A drain's public name, shaped like Heroku's drain tokens."""
    return f"d.{uuid.uuid4()}"


async def _app_drains(tx: Transaction, app: App) -> list[Drain]:
    rows = await tx.fetch(f"{_SELECT} WHERE drains.app_id = $1 ORDER BY drains.created_at, "
                          "drains.token", app.id)
    return [Drain.from_row(r) for r in rows]


class DrainStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, ident: str, url: str) -> Drain:
        """A new drain of the app `ident`; it starts with the app's next line."""
        async with self._db.write_unordered() as tx:
            app = await require_app(tx, ident)
            drains = await _app_drains(tx, app)
            same = canonical(url)
            twin = next((d for d in drains if canonical(d.url) == same), None)
            if twin is not None:
                raise errors.Conflict(f"app {app.name!r} already drains to that URL (drain "
                                      f"{twin.token})")
            if len(drains) >= MAX_PER_APP:
                raise errors.Invalid(f"app {app.name!r} has {len(drains)} drains, the most it "
                                     "may have: remove one with `dynomesh drains:remove` first")
            head = int(await tx.fetchval("SELECT seq FROM log_heads WHERE app_id = $1",
                                         app.id) or 0)
            drain_id = str(uuid.uuid4())
            await tx.execute(
                "INSERT INTO drains (id, app_id, url, token, created_at, cursor) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                drain_id, app.id, url, new_token(), now_iso(), head)
            await tx.notify(NOTIFY_CHANNEL, "added")
            return Drain.from_row(await tx.fetchrow(f"{_SELECT} WHERE drains.id = $1",
                                                    drain_id))

    async def list(self, ident: str) -> tuple[App, list[Drain]]:
        async with self._db.read() as tx:
            app = await require_app(tx, ident)
            return app, await _app_drains(tx, app)

    async def remove(self, ident: str, which: str) -> Drain:
        """Remove the app's drain named by its id, its token, its URL (as given, in any
        spelling of it) or its URL as `dynomesh drains` shows it (masked), if only one drain
        shows so."""
        async with self._db.write_unordered() as tx:
            app = await require_app(tx, ident)
            drain = _named(await _app_drains(tx, app), which, app.name)
            await tx.execute("DELETE FROM drains WHERE id = $1", drain.id)
            await tx.notify(NOTIFY_CHANNEL, "removed")
            return drain

    # -- leases -----------------------------------------------------------------------------

    async def claim(self, node: str, now: float, ttl: float, *, limit: int) -> list[Drain]:
        """Take up to `limit` drains nobody holds (or whose lease ran out by `now`) for `ttl`
        seconds; the drains taken, with their new epochs."""
        if limit <= 0:
            return []
        async with self._db.write_unordered() as tx:
            rows = await tx.fetch(
                "SELECT id FROM drains WHERE owner IS NULL OR lease_until < $1 "
                "ORDER BY created_at, id LIMIT $2", now, limit)
            taken: list[str] = []
            for row in rows:
                # Two nodes may pick the same row: the second UPDATE, after the first one's
                # commit, no longer matches its WHERE (READ COMMITTED re-checks it).
                if await tx.execute(
                        "UPDATE drains SET owner = $1, lease_until = $2, "
                        "lease_epoch = lease_epoch + 1 "
                        "WHERE id = $3 AND (owner IS NULL OR lease_until < $4)",
                        node, now + ttl, row["id"], now):
                    taken.append(row["id"])
            drains = []
            for drain_id in taken:
                drains.append(Drain.from_row(await tx.fetchrow(
                    f"{_SELECT} WHERE drains.id = $1", drain_id)))
            return drains

    async def renew(self, node: str, now: float, ttl: float,
                    held: Sequence[HeldLease]) -> set[str]:
        """Extend these leases to `now + ttl`, recording each one's progress; the ids of
        those still held (a drain removed, or taken over by another node, is not). Rows are
        updated in the order given: give them in claim's order (created_at, id)."""
        kept: set[str] = set()
        if not held:
            return kept
        async with self._db.write_unordered() as tx:
            for lease in held:
                if await tx.execute(
                        "UPDATE drains SET lease_until = $1, cursor = $2, sent = $3, "
                        "dropped = $4, retries = $5, last_error = $6, last_error_at = $7 "
                        "WHERE id = $8 AND owner = $9 AND lease_epoch = $10",
                        now + ttl, lease.cursor, *_stats(lease.stats), lease.drain_id, node,
                        lease.epoch):
                    kept.add(lease.drain_id)
        return kept

    async def release(self, node: str, held: Sequence[HeldLease]) -> None:
        """Give these drains back (the node stops), with how far each got."""
        if not held:
            return
        async with self._db.write_unordered() as tx:
            for lease in held:
                await tx.execute(
                    "UPDATE drains SET owner = NULL, lease_until = NULL, cursor = $1, "
                    "sent = $2, dropped = $3, retries = $4, last_error = $5, "
                    "last_error_at = $6 WHERE id = $7 AND owner = $8 AND lease_epoch = $9",
                    lease.cursor, *_stats(lease.stats), lease.drain_id, node, lease.epoch)
            await tx.notify(NOTIFY_CHANNEL, "released")

    async def count(self) -> int:
        async with self._db.read() as tx:
            return int(await tx.fetchval("SELECT COUNT(*) FROM drains"))


def _named(drains: list[Drain], which: str, app: str) -> Drain:
    """The drain `which` names (see DrainStore.remove); errors never repeat a secret."""
    same = canonical(which)
    found = [d for d in drains if which in (d.id, d.token) or canonical(d.url) == same]
    if not found:
        found = [d for d in drains if masked(d.url) == which]
        if len(found) > 1:
            raise errors.Conflict(f"{len(found)} drains of app {app!r} show as {which}: name "
                                  "one by its token (d.…) from `dynomesh drains --app "
                                  f"{app}`")
    if not found:
        raise errors.NotFound(f"no drain {masked(which)!r} on app {app!r}: `dynomesh "
                              f"drains --app {app}` lists them; name one by its token (d.…)")
    return found[0]


def _stats(stats: DrainStats) -> tuple:
    return (stats.sent, stats.dropped, stats.retries, stats.last_error, stats.last_error_at)
