"""Apps and what hangs directly off them: maintenance, custom domains, features."""

from __future__ import annotations

import uuid

from controlplane.store import errors
from controlplane.store.database import Database, Transaction
from controlplane.store.models import App, Domain, Feature, now_iso
from controlplane.store.revision import Feed

SESSION_AFFINITY = "http-session-affinity"

# The features an app can turn on. Heroku's `preboot`: on each release, start the new web
# dynos beside the old ones and switch traffic once they are all up.
FEATURES: dict[str, str] = {
    "preboot": "Start new web dynos beside the old ones on each release and switch routes "
               "once all are up (no boot wait for requests).",
    # Heroku's `http-session-affinity`: the routers pin each client to a dyno with a signed
    # cookie (router/affinity.py); the route entry says so.
    SESSION_AFFINITY: "Send each client's requests to the same web dyno while it runs "
                      "(a signed cookie set by the routers).",
}
# Features that change what the app's route entry says (the others: what the scheduler does).
ROUTE_FEATURES = frozenset({SESSION_AFFINITY})


async def require_app(tx: Transaction, ident: str) -> App:
    """The app named `ident` (or with that id); NotFound otherwise."""
    row = await tx.fetchrow("SELECT * FROM apps WHERE name = $1 OR id = $1", ident)
    if row is None:
        raise errors.NotFound(f"app {ident!r} not found: `dynomesh apps` lists your apps")
    return App.from_row(row)


async def touch_routes(tx: Transaction, app: App) -> int:
    """Record that `app`'s route entry changed (hostnames, maintenance, condition, dynos)."""
    return await tx.record_change(Feed.ROUTES, app.name)


class AppStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, name: str) -> App:
        now = now_iso()
        async with self._db.write() as tx:
            if await tx.fetchrow("SELECT 1 FROM apps WHERE name = $1", name):
                raise errors.Conflict(f"the name {name!r} is already taken: pick another one")
            app = App(str(uuid.uuid4()), name, False, now, now)
            await tx.execute(
                "INSERT INTO apps (id, name, maintenance, created_at, updated_at) "
                "VALUES ($1, $2, 0, $3, $4)", app.id, app.name, now, now)
            await touch_routes(tx, app)
        return app

    async def get(self, ident: str) -> App:
        async with self._db.read() as tx:
            return await require_app(tx, ident)

    async def list(self) -> list[App]:
        async with self._db.read() as tx:
            return [App.from_row(r) for r in await tx.fetch("SELECT * FROM apps ORDER BY name")]

    async def delete(self, ident: str) -> tuple[App, list[str]]:
        """Delete the app and everything it owns; return it and its slug ids (files to remove)."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            addon = await tx.fetchrow("SELECT name FROM addons WHERE app_id = $1 ORDER BY name",
                                      app.id)
            if addon is not None:  # its database would outlive every record of it
                raise errors.Conflict(
                    f"{app.name} still has the add-on {addon['name']}: destroy it first "
                    f"(`dynomesh addons:destroy {addon['name']} --app {app.name} "
                    f"--confirm {app.name}`)")
            slug_ids = [r["id"] for r in
                        await tx.fetch("SELECT id FROM slugs WHERE app_id = $1", app.id)]
            vm_ids = [r["vm_id"] for r in await tx.fetch(
                "SELECT DISTINCT vm_id FROM dynos WHERE app_id = $1 AND vm_id IS NOT NULL "
                "ORDER BY vm_id", app.id)]
            await tx.execute("DELETE FROM apps WHERE id = $1", app.id)  # dynos go with it
            await touch_routes(tx, app)
            for vm_id in vm_ids:  # their dyno managers stop the app's dynos
                await tx.record_change(Feed.ASSIGNMENTS, vm_id)
        return app, slug_ids

    async def set_maintenance(self, ident: str, enabled: bool) -> App:
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            if app.maintenance == enabled:
                return app
            now = now_iso()
            await tx.execute("UPDATE apps SET maintenance = $1, updated_at = $2 WHERE id = $3",
                             int(enabled), now, app.id)
            await touch_routes(tx, app)
        return App(app.id, app.name, enabled, app.created_at, now)

    # Custom domains: a hostname belongs to at most one app (UNIQUE in the schema).

    async def list_domains(self, ident: str) -> tuple[App, list[Domain]]:
        async with self._db.read() as tx:
            app = await require_app(tx, ident)
            rows = await tx.fetch("SELECT * FROM domains WHERE app_id = $1 ORDER BY hostname",
                                  app.id)
            return app, [Domain.from_row(r) for r in rows]

    async def add_domain(self, ident: str, hostname: str) -> Domain:
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            owner = await tx.fetchrow(
                "SELECT apps.name FROM domains JOIN apps ON apps.id = domains.app_id "
                "WHERE domains.hostname = $1", hostname)
            if owner is not None:
                where = "this app" if owner["name"] == app.name else f"app {owner['name']!r}"
                raise errors.Conflict(f"{hostname} is already added to {where}: a hostname "
                                      "belongs to one app (remove it there first)")
            domain = Domain(str(uuid.uuid4()), app.id, hostname, now_iso())
            await tx.execute(
                "INSERT INTO domains (id, app_id, hostname, created_at) VALUES ($1, $2, $3, $4)",
                domain.id, domain.app_id, domain.hostname, domain.created_at)
            await touch_routes(tx, app)
        return domain

    async def remove_domain(self, ident: str, hostname_or_id: str) -> Domain:
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            row = await tx.fetchrow(
                "SELECT * FROM domains WHERE app_id = $1 AND (hostname = $2 OR id = $2)",
                app.id, hostname_or_id.lower())
            if row is None:
                raise errors.NotFound(f"domain {hostname_or_id!r} is not on app {app.name!r}: "
                                      f"`dynomesh domains --app {app.name}` lists them")
            domain = Domain.from_row(row)
            await tx.execute("DELETE FROM domains WHERE id = $1", domain.id)
            await touch_routes(tx, app)
        return domain

    # Features.

    async def list_features(self, ident: str) -> list[Feature]:
        async with self._db.read() as tx:
            app = await require_app(tx, ident)
            enabled = {r["name"]: bool(r["enabled"]) for r in await tx.fetch(
                "SELECT name, enabled FROM app_features WHERE app_id = $1", app.id)}
        return [Feature(name, text, enabled.get(name, False)) for name, text in FEATURES.items()]

    async def get_feature(self, ident: str, name: str) -> Feature:
        for feature in await self.list_features(ident):
            if feature.name == name:
                return feature
        raise _unknown_feature(name)

    async def set_feature(self, ident: str, name: str, enabled: bool) -> Feature:
        if name not in FEATURES:
            raise _unknown_feature(name)
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            was = await tx.fetchval("SELECT enabled FROM app_features WHERE app_id = $1 "
                                    "AND name = $2", app.id, name)
            await tx.execute(
                "INSERT INTO app_features (app_id, name, enabled, updated_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (app_id, name) "
                "DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at",
                app.id, name, int(enabled), now_iso())
            if bool(was) != enabled:  # e.g. preboot off mid-rollout: the scheduler looks again
                await tx.record_change(Feed.FORMATION, app.name)
                if name in ROUTE_FEATURES:
                    await touch_routes(tx, app)
        return Feature(name, FEATURES[name], enabled)


def _unknown_feature(name: str) -> errors.NotFound:
    return errors.NotFound(f"no feature named {name!r}; features: {', '.join(FEATURES)}")
