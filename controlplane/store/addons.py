"""Add-ons: the rows that say which provider resources (a PostgreSQL database) an app has.

Creating or destroying an add-on spans two systems, this store and the provider's server, so
each is a short saga of store steps around the provider's work (controlplane/addons/service.py):
`begin_create` records the add-on as `provisioning`, `attach` sets its config var (a new
release) and marks it `ready`; `begin_destroy` unsets the config var (a new release) and marks
it `deprovisioning`, `finish_destroy` forgets it. Each step is one transaction, so a crash
between them leaves a row whose state says what is left to do.
"""

from __future__ import annotations

import uuid

from controlplane.store import errors
from controlplane.store.apps import require_app
from controlplane.store.database import Database, Transaction
from controlplane.store.models import Addon, AddonState, App, Release, now_iso
from controlplane.store.releases import change_config, config_vars

_COLUMNS = ("SELECT addons.*, apps.name AS app_name FROM addons "
            "JOIN apps ON apps.id = addons.app_id ")


async def _by_kind(tx: Transaction, app: App, kind: str) -> Addon | None:
    row = await tx.fetchrow(_COLUMNS + "WHERE addons.app_id = $1 AND addons.kind = $2",
                            app.id, kind)
    return None if row is None else Addon.from_row(row)


async def _require(tx: Transaction, app: App, name: str) -> Addon:
    row = await tx.fetchrow(_COLUMNS + "WHERE addons.app_id = $1 AND addons.name = $2",
                            app.id, name)
    if row is None:
        raise errors.NotFound(f"{app.name} has no add-on {name!r}: `dynomesh addons --app "
                              f"{app.name}` lists its add-ons")
    return Addon.from_row(row)


async def _by_id(tx: Transaction, addon_id: str) -> Addon:
    row = await tx.fetchrow(_COLUMNS + "WHERE addons.id = $1", addon_id)
    if row is None:
        raise errors.NotFound(f"add-on {addon_id!r} no longer exists")
    return Addon.from_row(row)


async def _set_state(tx: Transaction, addon: Addon, state: AddonState, attached: bool) -> None:
    await tx.execute("UPDATE addons SET state = $1, attached = $2, updated_at = $3 WHERE id = $4",
                     state.value, int(attached), now_iso(), addon.id)


def _taken(addon: Addon) -> errors.Conflict:
    where = f"--app {addon.app_name}"
    if addon.state is AddonState.DEPROVISIONING:
        return errors.Conflict(
            f"{addon.app_name}'s {addon.kind} add-on {addon.name} is being destroyed: finish "
            f"with `dynomesh addons:destroy {addon.name} {where} --confirm {addon.app_name}`, "
            "then create a new one")
    return errors.Conflict(
        f"{addon.app_name} already has a {addon.kind} add-on ({addon.name}, "
        f"{addon.config_var}): `dynomesh addons:info {addon.name} {where}` shows it; "
        f"`dynomesh addons:destroy {addon.name} {where} --confirm {addon.app_name}` removes it")


class AddonStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def begin_create(self, ident: str, *, kind: str, name: str, resource: str,
                           config_var: str, location: str | None = None
                           ) -> tuple[Addon, bool]:
        """Record a new add-on as `provisioning`; -> (it, False). An add-on of this kind
        that a crash left `provisioning` is handed back to be finished instead: (it, True)."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            existing = await _by_kind(tx, app, kind)
            if existing is not None:
                if existing.state is AddonState.PROVISIONING:
                    return existing, True
                raise _taken(existing)
            if config_var in await config_vars(tx, app):
                raise errors.Conflict(
                    f"{app.name} already has a {config_var} config var, which the add-on "
                    f"would replace: `dynomesh config:unset {config_var} --app {app.name}` "
                    "first if it may go")
            now = now_iso()
            addon_id = str(uuid.uuid4())
            await tx.execute(
                "INSERT INTO addons (id, app_id, kind, name, resource, config_var, state, "
                "attached, created_at, updated_at, location) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $9)",
                addon_id, app.id, kind, name, resource, config_var,
                AddonState.PROVISIONING.value, now, location)
            return await _by_id(tx, addon_id), False

    async def attach(self, addon_id: str, value: str) -> tuple[Addon, Release | None]:
        """Set the add-on's config var to `value` (a new release) and mark it `ready`."""
        async with self._db.write() as tx:
            addon = await _by_id(tx, addon_id)
            if addon.state is not AddonState.PROVISIONING:
                raise errors.Invalid(f"add-on {addon.name} is {addon.state.value}, not being "
                                     "created")
            app = await require_app(tx, addon.app_id)
            _, release = await change_config(tx, app, {addon.config_var: value})
            await _set_state(tx, addon, AddonState.READY, True)
            return await _by_id(tx, addon_id), release

    async def begin_destroy(self, ident: str, name: str) -> tuple[Addon, Release | None]:
        """Unset the add-on's config var if it set it (a new release) and mark it
        `deprovisioning`, so the app stops using it before the provider removes it."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            addon = await _require(tx, app, name)
            release = None
            if addon.attached:
                _, release = await change_config(tx, app, {addon.config_var: None})
            await _set_state(tx, addon, AddonState.DEPROVISIONING, False)
            return await _by_id(tx, addon.id), release

    async def finish_destroy(self, addon_id: str) -> None:
        """Forget an add-on the provider removed."""
        async with self._db.write() as tx:
            addon = await _by_id(tx, addon_id)
            if addon.state is not AddonState.DEPROVISIONING:
                raise errors.Invalid(f"add-on {addon.name} is {addon.state.value}, not being "
                                     "destroyed")
            await tx.execute("DELETE FROM addons WHERE id = $1", addon_id)

    async def forget_unmade(self, addon_id: str) -> None:
        """Forget a `provisioning` add-on whose provider work was undone (a failed create)."""
        async with self._db.write() as tx:
            await tx.execute("DELETE FROM addons WHERE id = $1 AND state = $2", addon_id,
                             AddonState.PROVISIONING.value)

    async def get(self, ident: str, name: str) -> Addon:
        async with self._db.read() as tx:
            return await _require(tx, await require_app(tx, ident), name)

    async def list(self, ident: str) -> list[Addon]:
        async with self._db.read() as tx:
            app = await require_app(tx, ident)
            rows = await tx.fetch(_COLUMNS + "WHERE addons.app_id = $1 ORDER BY addons.name",
                                  app.id)
            return [Addon.from_row(r) for r in rows]
