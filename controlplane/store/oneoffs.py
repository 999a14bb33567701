"""One-off dynos: `dynomesh run` and each release's release phase.

A one-off dyno is a `dynos` row with a `one_off` spec (models.OneOff). It is created unplaced,
with a `formation` change so the scheduler wakes and places it where there is room, as it
places any dyno (the planner leaves one-offs alone: no formation wants them). It is never
restarted: when its dyno manager reports it `down` (its command exited, it timed out, it was
stopped) or `crashed` (it could not start), `finish` deletes the row, and for a release phase
settles its release, all in the transaction of that report. A one-off whose VM is lost ends
the same way, with no exit status (Heroku: one-off dynos do not move between hosts).
"""

from __future__ import annotations

import itertools
import random
import uuid

from controlplane.store import errors
from controlplane.store.apps import require_app, touch_routes
from controlplane.store.database import Database, Transaction
from controlplane.store.dynos import remove_now
from controlplane.store.models import (RELEASE_PHASE, App, Dyno, OneOff, ReleaseStatus,
                                       now_iso)
from controlplane.store.revision import Feed

# How much of a release phase's output its release keeps (the tail: where the error is).
PHASE_OUTPUT_CHARS = 4000
# One-off dynos are numbered at random, as Heroku's (run.4821): a number is not reused right
# after its dyno ended, so `logs --dyno run.4821` shows one dyno's lines.
NUMBERS = range(1000, 10000)
_NUMBERS = random.Random()


def one_off_number(taken: set[int], rng: random.Random) -> int:
    """A number no dyno of the type has now (the lowest free one if the draws keep hitting)."""
    for _ in range(8):
        number = rng.choice(NUMBERS)
        if number not in taken:
            return number
    return next(n for n in itertools.count(NUMBERS.start) if n not in taken)


async def create_one_off(tx: Transaction, app: App, *, type_: str, release: int, size: str,
                         memory_mb: int, spec: OneOff) -> Dyno:
    """Insert an unplaced one-off dyno named `<type>.<number>`; the scheduler places it."""
    taken = {int(r["number"]) for r in await tx.fetch(
        "SELECT number FROM dynos WHERE app_id = $1 AND type = $2", app.id, type_)}
    number = one_off_number(taken, _NUMBERS)
    dyno_id = f"d-{uuid.uuid4().hex}"
    await tx.execute(
        "INSERT INTO dynos (id, app_id, type, number, release_version, size, memory_mb, "
        "vm_id, serving, created_at, one_off) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 1, $8, "
        "$9)", dyno_id, app.id, type_, number, release, size, memory_mb, now_iso(),
        spec.to_json())
    await tx.record_change(Feed.FORMATION, app.name)  # wakes the scheduler to place it
    row = await tx.fetchrow("SELECT * FROM dynos WHERE id = $1", dyno_id)
    return Dyno.from_row(row)


def phase_verdict(exit_status: int | None, reason: str | None) -> tuple[ReleaseStatus, str]:
    """A release phase's end -> its release's status, and the line that says why."""
    if exit_status == 0:
        return ReleaseStatus.SUCCEEDED, "Release phase succeeded"
    if exit_status is not None:
        return ReleaseStatus.FAILED, f"Release phase failed: exited with status {exit_status}"
    return ReleaseStatus.FAILED, f"Release phase failed: {reason or 'it did not finish'}"


def output_tail(output: str | None, verdict_line: str) -> str:
    """What the release keeps: the last PHASE_OUTPUT_CHARS of the output, then the verdict."""
    text = (output or "")[-PHASE_OUTPUT_CHARS:]
    return f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}{verdict_line}"


async def finish(tx: Transaction, dyno: Dyno, app_name: str, *, exit_status: int | None,
                 output: str | None, reason: str | None) -> ReleaseStatus | None:
    """A one-off dyno ended: delete it; a release phase settles its release (the status)."""
    await remove_now(tx, dyno, app_name)
    if dyno.one_off is None or not dyno.one_off.release_phase:
        return None
    status, line = phase_verdict(exit_status, reason)
    release = await tx.fetchrow(
        "SELECT id, status FROM releases WHERE app_id = $1 AND version = $2", dyno.app_id,
        dyno.release)
    if release is None or release["status"] != ReleaseStatus.PENDING.value:
        return None  # settled already (a report sent twice)
    await tx.execute("UPDATE releases SET status = $1, phase_output = $2, updated_at = $3 "
                     "WHERE id = $4", status.value, output_tail(output, line), now_iso(),
                     release["id"])
    app = App.from_row(await tx.fetchrow("SELECT * FROM apps WHERE id = $1", dyno.app_id))
    if status is ReleaseStatus.SUCCEEDED:
        # releases.py makes release phases (create_one_off), so it is imported here, late.
        from controlplane.store.releases import went_live
        await went_live(tx, app, dyno.release)
    await touch_routes(tx, app)  # the scheduler rolls the release out, or keeps the old one
    return status


class OneOffStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def run(self, ident: str, spec: OneOff, *, size: str, memory_mb: int,
                  type_: str) -> tuple[App, Dyno]:
        """A one-off dyno of the app's current release, running `spec.command`."""
        from controlplane.store.releases import current_release  # see `finish`

        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            release = await current_release(tx, app)
            if release is None or release.slug_id is None:
                raise errors.Invalid(f"{app.name} has no code to run yet: deploy it first "
                                     f"(`dynomesh deploy DIR --app {app.name}`)")
            if type_ == RELEASE_PHASE:
                raise errors.Invalid("one-off dynos are named run.N; `release` is the release "
                                     "phase's")
            return app, await create_one_off(tx, app, type_=type_, release=release.version,
                                             size=size, memory_mb=memory_mb, spec=spec)

    async def placed_on(self, dyno_id: str, vm_id: str) -> bool:
        """Whether `dyno_id` is an attached one-off dyno placed on `vm_id`."""
        async with self._db.read() as tx:
            row = await tx.fetchrow("SELECT vm_id, one_off FROM dynos WHERE id = $1", dyno_id)
        return (row is not None and row["vm_id"] == vm_id and row["one_off"] is not None
                and OneOff.from_json(row["one_off"]).attach_url is not None)

    async def abandon(self, dyno_id: str) -> None:
        """Remove a one-off dyno whose caller went away before it started (if it still is)."""
        async with self._db.write() as tx:
            row = await tx.fetchrow("SELECT d.*, a.name AS app_name FROM dynos d JOIN apps a "
                                    "ON a.id = d.app_id WHERE d.id = $1", dyno_id)
            if row is not None:
                await finish(tx, Dyno.from_row(row), row["app_name"], exit_status=None,
                             output=None, reason="its session ended before it started")
