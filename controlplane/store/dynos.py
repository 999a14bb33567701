"""Dynos as users see and steer them: `ps`, `ps:restart`, `ps:stop`.

A dyno that routers may be sending requests to is never stopped outright: it is taken out of
its app's route entry first (`take_out`, at this transaction's revision) and the scheduler
stops or restarts it once every router has that revision (see `scheduler/takeout.py`). Any
other dyno is restarted (its restart generation bumped, which its dyno manager treats as a
changed assignment) or removed at once. A stopped formation dyno is replaced by the
scheduler, as on Heroku.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.store import errors
from controlplane.store.apps import require_app
from controlplane.store.database import Database, Row, Transaction
from controlplane.store.models import App, Dyno, TakeOut
from controlplane.store.revision import Feed

_ORDER = "ORDER BY type, number, serving DESC, created_at, id"
# Dynos with their app's name (feeds are keyed by it); a query adds its WHERE clause.
WITH_APP_NAME = "SELECT d.*, a.name AS app_name FROM dynos d JOIN apps a ON a.id = d.app_id"


def with_app_name(rows: Iterable[Row]) -> list[tuple[Dyno, str]]:
    return [(Dyno.from_row(r), r["app_name"]) for r in rows]


async def start_take_out(tx: Transaction, dyno: Dyno, app_name: str, then: TakeOut,
                         now: float) -> None:
    """Take `dyno` out of the route feed now; `then` happens once routers have the change."""
    if dyno.take_out is not None:
        # Already out of the routes: only what happens afterwards can change (restart -> stop).
        await tx.execute("UPDATE dynos SET take_out = $1 WHERE id = $2", then.value, dyno.id)
        return
    revision = await tx.record_change(Feed.ROUTES, app_name)
    await tx.execute("UPDATE dynos SET take_out = $1, take_out_revision = $2, take_out_at = $3 "
                     "WHERE id = $4", then.value, revision, now, dyno.id)


async def restart_now(tx: Transaction, dyno: Dyno, app_name: str) -> None:
    """A new restart generation: the dyno manager restarts the dyno. Until it reports again,
    the dyno shows as starting (its stored `since` stays, so older reports stay ignored)."""
    await tx.execute(
        "UPDATE dynos SET restart_generation = restart_generation + 1, take_out = NULL, "
        "take_out_revision = NULL, take_out_at = NULL, state = NULL, address = NULL, "
        "reason = NULL, error_code = NULL WHERE id = $1", dyno.id)
    if dyno.vm_id is not None:
        await tx.record_change(Feed.ASSIGNMENTS, dyno.vm_id)
    if dyno.is_web:
        await tx.record_change(Feed.ROUTES, app_name)


async def remove_now(tx: Transaction, dyno: Dyno, app_name: str) -> None:
    """Delete the dyno: its VM's assignments drop it, and the dyno manager stops it."""
    await tx.execute("DELETE FROM dynos WHERE id = $1", dyno.id)
    if dyno.vm_id is not None:
        await tx.record_change(Feed.ASSIGNMENTS, dyno.vm_id)
    if dyno.is_web:
        await tx.record_change(Feed.ROUTES, app_name)
    await tx.record_change(Feed.FORMATION, app_name)  # the scheduler may replace it


@dataclass(frozen=True)
class DynoListing:
    app: App
    dynos: list[Dyno]


class DynoStore:
    def __init__(self, db: Database, clock=time.time) -> None:
        self._db = db
        self._clock = clock

    async def list(self, ident: str) -> DynoListing:
        async with self._db.read() as tx:
            app = await require_app(tx, ident)
            rows = await tx.fetch(f"SELECT * FROM dynos WHERE app_id = $1 {_ORDER}", app.id)
        return DynoListing(app, [Dyno.from_row(r) for r in rows])

    async def get(self, ident: str, dyno: str) -> tuple[App, Dyno]:
        """One dyno by id or name (during a preboot, the serving one of two sharing a name)."""
        listing = await self.list(ident)
        for candidate in listing.dynos:
            if dyno in (candidate.id, candidate.name):
                return listing.app, candidate
        raise _no_dyno(listing.app, dyno)

    async def restart(self, ident: str, target: str | None) -> DynoListing:
        """Restart every dyno (target None), a process type (`web`) or one dyno (`web.2`)."""
        async with self._db.write() as tx:
            app, dynos = await _targets(tx, ident, target)
            now = self._clock()
            if target is not None and any(d.one_off for d in dynos if d.name == target):
                raise errors.Invalid(f"{target} is a one-off dyno: it runs its command once "
                                     f"and is never restarted; `dynomesh ps:stop {target}` "
                                     "stops it")
            for dyno in dynos:
                if dyno.take_out is not None or dyno.one_off is not None:
                    continue  # already leaving or restarting; one-offs run once
                if dyno.routable:
                    await start_take_out(tx, dyno, app.name, TakeOut.RESTART, now)
                else:
                    await restart_now(tx, dyno, app.name)
            return DynoListing(app, await _reread(tx, dynos))

    async def stop(self, ident: str, target: str) -> DynoListing:
        """Stop a dyno (`web.2`) or a process type's dynos; the scheduler starts replacements
        of formation dynos. A one-off dyno is removed (its dyno manager stops it)."""
        async with self._db.write() as tx:
            app, dynos = await _targets(tx, ident, target)
            now = self._clock()
            for dyno in dynos:
                if dyno.take_out is TakeOut.STOP:
                    continue
                if dyno.one_off is not None:
                    # Ended here, not replaced: a release phase stopped fails its release.
                    from controlplane.store.oneoffs import finish  # it imports this module
                    await finish(tx, dyno, app.name, exit_status=None, output=None,
                                 reason=f"{dyno.name} was stopped by ps:stop")
                elif dyno.take_out is TakeOut.RESTART or dyno.routable:
                    await start_take_out(tx, dyno, app.name, TakeOut.STOP, now)
                else:
                    await remove_now(tx, dyno, app.name)
            return DynoListing(app, await _reread(tx, dynos))


def _no_dyno(app: App, target: str) -> errors.NotFound:
    return errors.NotFound(f"no dyno {target!r} on {app.name}: `dynomesh ps --app {app.name}` "
                           "lists them")


def _matches(dyno: Dyno, target: str | None) -> bool:
    return target is None or target in (dyno.id, dyno.name, dyno.type)


async def _targets(tx: Transaction, ident: str, target: str | None) -> tuple[App, list[Dyno]]:
    app = await require_app(tx, ident)
    rows = await tx.fetch(f"SELECT * FROM dynos WHERE app_id = $1 {_ORDER}", app.id)
    dynos: Iterable[Dyno] = (Dyno.from_row(r) for r in rows)
    chosen = [d for d in dynos if _matches(d, target)]
    if not chosen and target is not None:
        raise _no_dyno(app, target)
    return app, chosen


async def _reread(tx: Transaction, dynos: list[Dyno]) -> list[Dyno]:
    """The dynos as they are now; one removed just now is shown as it was."""
    fresh = []
    for dyno in dynos:
        row = await tx.fetchrow("SELECT * FROM dynos WHERE id = $1", dyno.id)
        fresh.append(dyno if row is None else Dyno.from_row(row))
    return fresh
