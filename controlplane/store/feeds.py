"""What the feeds serve: route facts per app, assignments per VM.

Both run inside the caller's read transaction (the one its feed hub reads the change log in),
so a feed message and the revision it carries come from one consistent view of the data.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from controlplane.store.database import Transaction, fetch_for
from controlplane.store.models import Assignment, Dyno, RouteFacts, SealedCertificate
from controlplane.store.releases import runnable_versions
from controlplane.store.routersettings import settings_of


async def route_facts(tx: Transaction, names: Collection[str] | None,
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
    releases = await runnable_versions(tx, ids)
    web = {r["app_id"]: int(r["quantity"]) for r in await fetch_for(
        tx, "SELECT app_id, quantity FROM formation WHERE type = 'web'", "app_id", ids)}
    dynos: dict[str, list[Dyno]] = {}
    for row in await fetch_for(tx, "SELECT * FROM dynos WHERE type = 'web'", "app_id", ids):
        dynos.setdefault(row["app_id"], []).append(Dyno.from_row(row))
    certificates: dict[str, list[SealedCertificate]] = {}
    for row in await fetch_for(tx, "SELECT app_id, id, chain, key_sealed FROM certificates "
                               "WHERE TRUE", "app_id", ids, order="created_at, id"):
        certificates.setdefault(row["app_id"], []).append(
            SealedCertificate(row["id"], row["chain"], row["key_sealed"]))
    challenges: dict[str, list[tuple[str, str]]] = {}
    for row in await fetch_for(tx, "SELECT app_id, token, key_authorization FROM acme_domains "
                               "WHERE token IS NOT NULL", "app_id", ids, order="token"):
        challenges.setdefault(row["app_id"], []).append((row["token"], row["key_authorization"]))
    settings = await settings_of(tx, ids)
    affinity = {r["app_id"] for r in await fetch_for(
        tx, "SELECT app_id FROM app_features WHERE name = 'http-session-affinity' "
            "AND enabled = 1", "app_id", ids)}
    return {a["name"]: RouteFacts(
        name=a["name"], maintenance=bool(a["maintenance"]),
        hosts=(f"{a['name']}.{base_domain}", *domains.get(a["id"], ())),
        has_release=a["id"] in releases, web_quantity=web.get(a["id"], 0),
        web_dynos=tuple(dynos.get(a["id"], ())),
        certificates=tuple(certificates.get(a["id"], ())),
        acme_challenges=tuple(challenges.get(a["id"], ())),
        request_timeout=settings[a["id"]].request_timeout if a["id"] in settings else None,
        max_body_bytes=settings[a["id"]].max_body_bytes if a["id"] in settings else None,
        session_affinity=a["id"] in affinity)
        for a in apps}


async def assignments(tx: Transaction, vm_id: str) -> list[Assignment]:
    """Every dyno placed on `vm_id` with its release's slug and config vars, by app and name."""
    rows = await tx.fetch(
        "SELECT d.*, a.name AS app_name, r.config, r.slug_id, s.checksum, "
        "rs.health_check_path, rs.health_check_interval, rs.health_check_failures FROM dynos d "
        "JOIN apps a ON a.id = d.app_id "
        "JOIN releases r ON r.app_id = d.app_id AND r.version = d.release_version "
        "LEFT JOIN slugs s ON s.id = r.slug_id "
        "LEFT JOIN router_settings rs ON rs.app_id = d.app_id "
        "WHERE d.vm_id = $1 ORDER BY a.name, d.type, d.number, d.id", vm_id)
    return [Assignment(Dyno.from_row(r), r["app_name"], r["slug_id"], r["checksum"],
                       json.loads(r["config"]), r["health_check_path"],
                       _optional(r["health_check_interval"], float),
                       _optional(r["health_check_failures"], int)) for r in rows]


def _optional(value, kind):
    return None if value is None else kind(value)
