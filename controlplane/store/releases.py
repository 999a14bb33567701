"""Slugs, releases, config vars and formation: what an app runs, and how much of it.

A release pairs a slug (the code) with a snapshot of the config vars. Every config change and
every rollback makes a new release, as on Heroku, so `releases` is the app's whole history.
The current release is the newest one that succeeded; its slug's process types decide which
formation entries exist.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence

from controlplane import sizes
from controlplane.store import errors
from controlplane.store.apps import require_app, touch_routes
from controlplane.store.database import Database, Transaction, fetch_for
from controlplane.store.models import (RELEASE_PHASE, App, FormationEntry, FormationUpdate,
                                       OneOff, Release, ReleaseStatus, Scaled, Slug, now_iso)
from controlplane.store.oneoffs import create_one_off

# A release phase that runs longer fails its release (ours: long enough for a big migration).
RELEASE_PHASE_TIMEOUT = 3600

_RELEASE_COLUMNS = ("SELECT releases.*, slugs.process_types FROM releases "
                    "LEFT JOIN slugs ON slugs.id = releases.slug_id ")


async def current_version(tx: Transaction, app: App) -> int | None:
    value = await tx.fetchval(
        "SELECT MAX(version) FROM releases WHERE app_id = $1 AND status = 'succeeded'", app.id)
    return None if value is None else int(value)


async def runnable_versions(tx: Transaction, app_ids: Sequence[str] | None) -> dict[str, int]:
    """app id -> its current release's version, for the apps (all if None) whose current
    release (the newest that succeeded) has a slug: what their dynos run."""
    rows = await fetch_for(
        tx, "SELECT r.app_id, r.version, r.slug_id FROM releases r WHERE r.status = 'succeeded' "
        "AND r.version = (SELECT MAX(x.version) FROM releases x WHERE x.app_id = r.app_id "
        "AND x.status = 'succeeded')", "r.app_id", app_ids)
    return {r["app_id"]: int(r["version"]) for r in rows if r["slug_id"] is not None}


async def current_release(tx: Transaction, app: App) -> Release | None:
    version = await current_version(tx, app)
    if version is None:
        return None
    row = await tx.fetchrow(_RELEASE_COLUMNS + "WHERE releases.app_id = $1 AND version = $2",
                            app.id, version)
    return Release.from_row(row, current_version=version)


async def config_vars(tx: Transaction, app: App) -> dict[str, str]:
    rows = await tx.fetch("SELECT key, value FROM config_vars WHERE app_id = $1 ORDER BY key",
                          app.id)
    return {r["key"]: r["value"] for r in rows}


async def addon_config_vars(tx: Transaction, app: App) -> dict[str, str]:
    """config var -> the name of the app's add-on that sets it (DATABASE_URL ->
    postgresql-1a2b3c). Such a var is the add-on's: config changes may not touch it, and
    rollbacks keep its value."""
    rows = await tx.fetch("SELECT config_var, name FROM addons WHERE app_id = $1", app.id)
    return {r["config_var"]: r["name"] for r in rows}


def _owned_by_addon(app: App, key: str, addon: str) -> errors.Conflict:
    # Heroku refuses too ("Cannot overwrite attachment values"): the var is the add-on's.
    where = f"--app {app.name}"
    return errors.Conflict(
        f"{key} belongs to the add-on {addon}, which sets it: `dynomesh addons:destroy {addon} "
        f"{where} --confirm {app.name}` removes the add-on and {key} with it; then set your own")


async def _require_slug(tx: Transaction, app: App, slug_id: str) -> Slug:
    row = await tx.fetchrow("SELECT * FROM slugs WHERE id = $1 AND app_id = $2", slug_id, app.id)
    if row is None:
        raise errors.NotFound(f"slug {slug_id!r} not found on app {app.name!r}: upload it first")
    return Slug.from_row(row)


async def _require_release(tx: Transaction, app: App, ref: str | int) -> Release:
    text = str(ref).lstrip("vV")
    if text.isdigit():
        row = await tx.fetchrow(_RELEASE_COLUMNS + "WHERE releases.app_id = $1 AND version = $2",
                                app.id, int(text))
    else:
        row = await tx.fetchrow(_RELEASE_COLUMNS + "WHERE releases.app_id = $1 AND releases.id = $2",
                                app.id, str(ref))
    if row is None:
        raise errors.NotFound(f"release {ref!r} not found on app {app.name!r}: "
                              f"`dynomesh releases --app {app.name}` lists them")
    return Release.from_row(row, current_version=await current_version(tx, app))


async def _sync_formation(tx: Transaction, app: App, process_types: Mapping[str, str]) -> None:
    """Make formation entries match the current release's process types.

    New types start at 0 dynos, except `web`, which starts at 1 (Heroku scales web to one dyno
    on the first deploy); existing types keep their quantity and size. `release` is the release
    phase's command, never a formation entry.
    """
    process_types = {t: c for t, c in process_types.items() if t != RELEASE_PHASE}
    existing = {r["type"] for r in
                await tx.fetch("SELECT type FROM formation WHERE app_id = $1", app.id)}
    now = now_iso()
    for type_ in process_types:
        if type_ not in existing:
            await tx.execute(
                "INSERT INTO formation (app_id, type, quantity, size, updated_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                app.id, type_, 1 if type_ == "web" else 0, sizes.DEFAULT_SIZE, now)
    for type_ in existing - set(process_types):
        await tx.execute("DELETE FROM formation WHERE app_id = $1 AND type = $2", app.id, type_)


async def went_live(tx: Transaction, app: App, version: int) -> None:
    """Release `version` just succeeded: if it is now the current one, its process types
    decide the formation."""
    if await current_version(tx, app) == version:
        release = await _require_release(tx, app, version)
        if release.slug_id:
            await _sync_formation(tx, app, release.process_types)


async def insert_release(tx: Transaction, app: App, *, slug: Slug | None,
                         config: Mapping[str, str], description: str,
                         status: ReleaseStatus, release_phase: bool = False) -> Release:
    """A new release; with `release_phase` and a slug whose Procfile has `release:`, it is
    `pending` and its release phase starts (a one-off dyno, in this same transaction, so a
    crash never leaves a pending release without its release phase)."""
    phase = (release_phase and status is ReleaseStatus.SUCCEEDED and slug is not None
             and RELEASE_PHASE in slug.process_types)
    if phase:
        status = ReleaseStatus.PENDING
    version = int(await tx.fetchval(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app_id = $1", app.id))
    now = now_iso()
    release_id = str(uuid.uuid4())
    await tx.execute(
        "INSERT INTO releases (id, app_id, version, slug_id, description, status, config, "
        "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        release_id, app.id, version, slug.id if slug else None, description, status.value,
        json.dumps(dict(config), sort_keys=True), now, now)
    if status is ReleaseStatus.SUCCEEDED and slug is not None:
        await _sync_formation(tx, app, slug.process_types)
    if phase:
        await create_one_off(
            tx, app, type_=RELEASE_PHASE, release=version, size=sizes.DEFAULT_SIZE,
            memory_mb=sizes.SIZES[sizes.DEFAULT_SIZE].memory_mb,
            spec=OneOff(slug.process_types[RELEASE_PHASE], timeout=RELEASE_PHASE_TIMEOUT,
                        release_phase=True))
    await touch_routes(tx, app)
    return await _require_release(tx, app, version)


def _config_description(set_keys: Sequence[str], removed: Sequence[str]) -> str:
    # Heroku's wording: "Set GREETING config vars", "Remove GREETING config vars".
    parts = []
    if set_keys:
        parts.append(f"Set {', '.join(set_keys)} config vars")
    if removed:
        parts.append(f"{'remove' if parts else 'Remove'} {', '.join(removed)} config vars")
    return " and ".join(parts)


async def change_config(tx: Transaction, app: App, changes: Mapping[str, str | None]
                        ) -> tuple[dict[str, str], Release | None]:
    """Apply `changes` (None deletes a key) in the caller's write transaction; a real change
    makes a new release (`config:set`, and an add-on setting or unsetting its config var)."""
    old = await config_vars(tx, app)
    new = dict(old)
    for key, value in changes.items():
        if value is None:
            new.pop(key, None)
        else:
            new[key] = value
    if new == old:
        return old, None
    set_keys = sorted(k for k, v in changes.items() if v is not None and old.get(k) != v)
    removed = sorted(k for k, v in changes.items() if v is None and k in old)
    for key in removed:
        await tx.execute("DELETE FROM config_vars WHERE app_id = $1 AND key = $2", app.id, key)
    for key in set_keys:
        await tx.execute(
            "INSERT INTO config_vars (app_id, key, value) VALUES ($1, $2, $3) "
            "ON CONFLICT (app_id, key) DO UPDATE SET value = excluded.value",
            app.id, key, new[key])
    base = await current_release(tx, app)
    slug = (await _require_slug(tx, app, base.slug_id)
            if base is not None and base.slug_id else None)
    # A config change is a new release like a deploy: its release phase runs first (Heroku
    # runs it on config changes too); the vars stay set whatever its verdict.
    release = await insert_release(tx, app, slug=slug, config=new,
                                    description=_config_description(set_keys, removed),
                                    status=ReleaseStatus.SUCCEEDED, release_phase=True)
    return new, release


async def _rolled_back_config(tx: Transaction, app: App, old: Release) -> dict[str, str]:
    """The config vars of a rollback to `old`: its own, except that each add-on's var keeps
    its value now (set, or unset while it is destroyed). Heroku: a rollback does not roll back
    add-ons, and the database the old URL named may be gone, or its password changed."""
    current = await config_vars(tx, app)
    config = dict(old.config)
    for key in await addon_config_vars(tx, app):
        if key in current:
            config[key] = current[key]
        else:
            config.pop(key, None)
    return config


async def insert_slug(tx: Transaction, app: App, *, slug_id: str, checksum: str, size: int,
                      process_types: Mapping[str, str]) -> Slug:
    """Record a slug whose file is already durably in place."""
    slug = Slug(slug_id, app.id, checksum, size, dict(process_types), now_iso())
    await tx.execute(
        "INSERT INTO slugs (id, app_id, checksum, size, process_types, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)", slug.id, app.id, checksum, size,
        json.dumps(slug.process_types), slug.created_at)
    return slug


class ReleaseStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # Slugs.

    async def add_slug(self, ident: str, *, slug_id: str, checksum: str, size: int,
                       process_types: Mapping[str, str]) -> Slug:
        """Record a slug whose file is already durably in place."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            return await insert_slug(tx, app, slug_id=slug_id, checksum=checksum, size=size,
                                     process_types=process_types)

    async def find_slug(self, slug_id: str) -> Slug:
        """A slug by id alone (slug downloads name no app)."""
        async with self._db.read() as tx:
            row = await tx.fetchrow("SELECT * FROM slugs WHERE id = $1", slug_id)
        if row is None:
            raise errors.NotFound(f"slug {slug_id!r} not found")
        return Slug.from_row(row)

    async def get_slug(self, ident: str, slug_id: str) -> Slug:
        async with self._db.read() as tx:
            return await _require_slug(tx, await require_app(tx, ident), slug_id)

    # Releases.

    async def create(self, ident: str, slug_id: str, *, description: str | None = None,
                     status: ReleaseStatus = ReleaseStatus.SUCCEEDED) -> Release:
        """A new release of `slug_id` with the app's current config vars."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            slug = await _require_slug(tx, app, slug_id)
            text = description or f"Deploy {slug.checksum.removeprefix('sha256:')[:8]}"
            return await insert_release(tx, app, slug=slug, config=await config_vars(tx, app),
                                        description=text, status=status, release_phase=True)

    async def rollback(self, ident: str, target: str | int) -> Release:
        """A new release with the slug and config vars of release `target`."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            old = await _require_release(tx, app, target)
            if old.status is not ReleaseStatus.SUCCEEDED:
                raise errors.Invalid(f"release v{old.version} {old.status.value}; roll back to a "
                                     "release that succeeded")
            if old.slug_id is None:
                # Config vars set before the first deploy make releases without a slug. Rolling
                # back to one once the app runs code would take the code away (no dynos, H81).
                current = await current_release(tx, app)
                if current is not None and current.slug_id is not None:
                    raise errors.Invalid(
                        f"v{old.version} has no slug (its config vars were set before the first "
                        f"deploy): rolling back to it would leave {app.name} no code to run. "
                        "Roll back to a release with a slug (`dynomesh releases` shows them), "
                        "or change config vars with `dynomesh config:set`")
            config = await _rolled_back_config(tx, app, old)
            await tx.execute("DELETE FROM config_vars WHERE app_id = $1", app.id)
            for key, value in config.items():
                await tx.execute("INSERT INTO config_vars (app_id, key, value) VALUES ($1, $2, $3)",
                                 app.id, key, value)
            slug = await _require_slug(tx, app, old.slug_id) if old.slug_id else None
            return await insert_release(tx, app, slug=slug, config=config,
                                         description=f"Rollback to v{old.version}",
                                         status=ReleaseStatus.SUCCEEDED, release_phase=True)

    async def set_status(self, ident: str, ref: str | int, status: ReleaseStatus) -> Release:
        """Settle a pending release (its build or release phase finished)."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            release = await _require_release(tx, app, ref)
            if release.status is status:
                return release
            if not release.status.can_become(status):
                raise errors.Invalid(f"release v{release.version} is {release.status.value}; "
                                     f"it cannot become {status.value}")
            await tx.execute("UPDATE releases SET status = $1, updated_at = $2 WHERE id = $3",
                             status.value, now_iso(), release.id)
            if status is ReleaseStatus.SUCCEEDED:
                await went_live(tx, app, release.version)
            await touch_routes(tx, app)
            return await _require_release(tx, app, release.version)

    async def get(self, ident: str, ref: str | int) -> Release:
        async with self._db.read() as tx:
            return await _require_release(tx, await require_app(tx, ident), ref)

    async def settled(self, ident: str, ref: str | int, *, timeout: float) -> Release:
        """The release once it is no longer `pending` (its release phase ended), or as it is
        after `timeout` seconds. Woken by commits (the revision signal), not by polling."""
        signal = self._db.signal
        try:
            async with asyncio.timeout(timeout):
                while True:
                    seen = signal.revision
                    release = await self.get(ident, ref)
                    if release.status is not ReleaseStatus.PENDING:
                        return release
                    await signal.wait_beyond(seen)
        except TimeoutError:
            return await self.get(ident, ref)

    async def current(self, ident: str) -> Release | None:
        async with self._db.read() as tx:
            return await current_release(tx, await require_app(tx, ident))

    async def list(self, ident: str, *, limit: int = 100) -> list[Release]:
        """Newest first."""
        async with self._db.read() as tx:
            app = await require_app(tx, ident)
            version = await current_version(tx, app)
            rows = await tx.fetch(_RELEASE_COLUMNS + "WHERE releases.app_id = $1 "
                                  "ORDER BY version DESC LIMIT $2", app.id, limit)
            return [Release.from_row(r, current_version=version) for r in rows]

    # Config vars.

    async def config(self, ident: str) -> dict[str, str]:
        async with self._db.read() as tx:
            return await config_vars(tx, await require_app(tx, ident))

    async def update_config(self, ident: str, changes: Mapping[str, str | None]
                            ) -> tuple[dict[str, str], Release | None]:
        """Apply `changes` (None deletes a key); a real change makes a new release. A var an
        add-on sets is refused: it is the add-on's (`addons:destroy` removes it)."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            owned = await addon_config_vars(tx, app)
            taken = sorted(set(changes) & set(owned))
            if taken:
                raise _owned_by_addon(app, taken[0], owned[taken[0]])
            return await change_config(tx, app, changes)

    # Formation.

    async def formation(self, ident: str) -> list[FormationEntry]:
        async with self._db.read() as tx:
            return await self._formation(tx, await require_app(tx, ident))

    @staticmethod
    async def _formation(tx: Transaction, app: App) -> list[FormationEntry]:
        release = await current_release(tx, app)
        commands = release.process_types if release else {}
        rows = await tx.fetch("SELECT * FROM formation WHERE app_id = $1 AND type != $2 "
                              "ORDER BY type", app.id, RELEASE_PHASE)
        return [FormationEntry(app.id, r["type"], int(r["quantity"]), r["size"],
                               commands.get(r["type"], ""), r["updated_at"]) for r in rows]

    async def scale(self, ident: str, updates: Sequence[FormationUpdate]) -> Scaled:
        """Apply a batch of formation updates atomically; all are checked before any applies.
        Return the formation after it, and whether the batch changed anything."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            if any(update.type == RELEASE_PHASE for update in updates):
                raise errors.Invalid(
                    "`release` is the release phase's command: it runs once for each new "
                    "release, before the release goes live, and is never scaled. Scale "
                    "another process type, or run it by hand with `dynomesh run`")
            entries = {e.type: e for e in await self._formation(tx, app)}
            if not entries:
                raise errors.NotFound(f"app {app.name!r} has no process types yet: deploy a "
                                      "slug with a Procfile first (`dynomesh deploy`)")
            for update in updates:
                if update.type not in entries:
                    raise errors.NotFound(
                        f"no process type {update.type!r} in {app.name}'s current release "
                        f"(it has: {', '.join(sorted(entries))})")
            now = now_iso()
            changed = False
            for update in updates:
                entry = entries[update.type]
                quantity = entry.quantity if update.quantity is None else update.quantity
                size = entry.size if update.size is None else update.size
                if (quantity, size) != (entry.quantity, entry.size):
                    changed = True
                    await tx.execute(
                        "UPDATE formation SET quantity = $1, size = $2, updated_at = $3 "
                        "WHERE app_id = $4 AND type = $5", quantity, size, now, app.id,
                        update.type)
            if changed:
                await touch_routes(tx, app)
            return Scaled(await self._formation(tx, app), changed)
