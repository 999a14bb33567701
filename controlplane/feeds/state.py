"""What the feeds serve, read in one transaction: route facts per app, assignments per VM.

Both readers run inside the caller's transaction, so a feed message and the revision it
carries come from one consistent view of the data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from typing import Any

from controlplane.feeds.routes import RouteFacts
from controlplane.store.database import Row, Transaction, placeholders
from controlplane.store.models import Dyno

log = logging.getLogger(__name__)
# Bound the number of parameters of one `IN (...)` list (SQLite and PostgreSQL both take more).
CHUNK = 500


async def fetch_for(tx: Transaction, sql: str, column: str, values: Sequence[str] | None,
                    *, order: str = "") -> list[Row]:
    """Rows of `sql` (which ends in a WHERE clause) whose `column` is one of `values` (all if None)."""
    suffix = f" ORDER BY {order}" if order else ""
    if values is None:
        return await tx.fetch(f"{sql} AND TRUE{suffix}")
    rows: list[Row] = []
    for i in range(0, len(values), CHUNK):
        chunk = list(values[i:i + CHUNK])
        rows += await tx.fetch(f"{sql} AND {column} IN ({placeholders(len(chunk))}){suffix}",
                               *chunk)
    return rows


async def current_runnable_releases(tx: Transaction,
                                    app_ids: Sequence[str] | None) -> dict[str, Row]:
    """app id -> its current release row (newest succeeded), for apps whose current has a slug."""
    rows = await fetch_for(
        tx, "SELECT r.app_id, r.version, r.slug_id FROM releases r WHERE r.status = 'succeeded' "
        "AND r.version = (SELECT MAX(x.version) FROM releases x WHERE x.app_id = r.app_id "
        "AND x.status = 'succeeded')", "r.app_id", app_ids)
    return {r["app_id"]: r for r in rows if r["slug_id"] is not None}


async def load_route_facts(tx: Transaction, names: Collection[str] | None,
                           base_domain: str) -> dict[str, RouteFacts]:
    """Facts for the apps named (every app if None); apps that do not exist are absent."""
    apps = await fetch_for(tx, "SELECT id, name, maintenance FROM apps WHERE TRUE", "name",
                           None if names is None else sorted(names))
    if not apps:
        return {}
    ids = None if names is None else [a["id"] for a in apps]
    domains: dict[str, list[str]] = {}
    for row in await fetch_for(tx, "SELECT app_id, hostname FROM domains WHERE TRUE", "app_id",
                               ids, order="hostname"):
        domains.setdefault(row["app_id"], []).append(row["hostname"])
    releases = await current_runnable_releases(tx, ids)
    web = {r["app_id"]: int(r["quantity"]) for r in await fetch_for(
        tx, "SELECT app_id, quantity FROM formation WHERE type = 'web'", "app_id", ids)}
    dynos: dict[str, list[Dyno]] = {}
    for row in await fetch_for(tx, "SELECT * FROM dynos WHERE type = 'web'", "app_id", ids):
        dynos.setdefault(row["app_id"], []).append(Dyno.from_row(row))
    return {a["name"]: RouteFacts(
        name=a["name"], maintenance=bool(a["maintenance"]),
        hosts=(f"{a['name']}.{base_domain}", *domains.get(a["id"], ())),
        has_release=a["id"] in releases, web_quantity=web.get(a["id"], 0),
        web_dynos=tuple(dynos.get(a["id"], ()))) for a in apps}


def slug_url(base_url: str, slug_id: str) -> str:
    return f"{base_url.rstrip('/')}/slugs/{slug_id}/download"


async def load_assignments(tx: Transaction, vm_id: str, base_url: str) -> dict[str, dict[str, Any]]:
    """dyno id -> its assignment entry, for every dyno placed on `vm_id`."""
    rows = await tx.fetch(
        "SELECT d.*, a.name AS app_name, r.config, r.slug_id, s.checksum FROM dynos d "
        "JOIN apps a ON a.id = d.app_id "
        "JOIN releases r ON r.app_id = d.app_id AND r.version = d.release_version "
        "LEFT JOIN slugs s ON s.id = r.slug_id WHERE d.vm_id = $1 ORDER BY a.name, d.type, "
        "d.number, d.id", vm_id)
    entries: dict[str, dict[str, Any]] = {}
    for row in rows:
        dyno = Dyno.from_row(row)
        if row["checksum"] is None:  # dynos are only made for releases with a slug
            log.error("feeds: dyno %s of %s has no slug (release v%d); not assigned",
                      dyno.name, row["app_name"], dyno.release)
            continue
        entries[dyno.id] = {
            "id": dyno.id, "kind": "formation", "app": row["app_name"], "name": dyno.name,
            "type": dyno.type, "release": dyno.release,
            "slug": {"url": slug_url(base_url, row["slug_id"]),
                     "sha256": row["checksum"].removeprefix("sha256:")},
            "env": json.loads(row["config"]), "memory_mb": dyno.memory_mb,
            "health_check": None, "restart": dyno.restart_generation}
    return entries
