"""Per-app router settings (`config:router`): read, change, and read for the feeds.

A change records the app's route entry as changed (request timeout, body limit) and, when the
health check changed, the assignments of every VM that runs one of the app's web dynos: their
dyno managers poll the new path (the assignment feed carries it).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from controlplane.routersettings import NAMES, RouterSettings
from controlplane.store.apps import require_app, touch_routes
from controlplane.store.database import Database, Transaction, fetch_for
from controlplane.store.models import App, now_iso
from controlplane.store.revision import Feed

_COLUMNS = ", ".join(NAMES)


def _settings(row) -> RouterSettings:
    if row is None:
        return RouterSettings()
    values = {name: row[name] for name in NAMES}
    for name in ("request_timeout", "health_check_interval"):
        if values[name] is not None:
            values[name] = float(values[name])
    for name in ("max_body_bytes", "health_check_failures"):
        if values[name] is not None:
            values[name] = int(values[name])
    return RouterSettings(**values)


async def settings_of(tx: Transaction, app_ids: Collection[str] | None
                      ) -> dict[str, RouterSettings]:
    """app id -> its settings, for the apps that set any (all apps if `app_ids` is None)."""
    rows = await fetch_for(tx, f"SELECT app_id, {_COLUMNS} FROM router_settings WHERE TRUE",
                           "app_id", None if app_ids is None else sorted(app_ids))
    return {row["app_id"]: _settings(row) for row in rows}


class RouterSettingsStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, ident: str) -> tuple[App, RouterSettings]:
        async with self._db.read() as tx:
            app = await require_app(tx, ident)
            return app, (await settings_of(tx, [app.id])).get(app.id, RouterSettings())

    async def update(self, ident: str, changes: dict[str, Any]) -> tuple[App, RouterSettings]:
        """Apply validated `changes` (setting name -> value, None resets it)."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            old = (await settings_of(tx, [app.id])).get(app.id, RouterSettings())
            new = old.changed(changes)
            if new == old:
                return app, old
            values = [getattr(new, name) for name in NAMES]
            await tx.execute(
                f"INSERT INTO router_settings (app_id, {_COLUMNS}, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (app_id) DO UPDATE SET "
                + ", ".join(f"{name} = excluded.{name}" for name in (*NAMES, "updated_at")),
                app.id, *values, now_iso())
            await touch_routes(tx, app)
            if new.health_fields_differ(old):
                for row in await tx.fetch(
                        "SELECT DISTINCT vm_id FROM dynos WHERE app_id = $1 AND type = 'web' "
                        "AND vm_id IS NOT NULL ORDER BY vm_id", app.id):
                    await tx.record_change(Feed.ASSIGNMENTS, row["vm_id"])
            return app, new

