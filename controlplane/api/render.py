"""The JSON shapes the API returns (documented in docs/api.md), one function per resource."""

from __future__ import annotations

from typing import Any

from controlplane.config import ControlConfig
from controlplane.store.models import (App, Domain, Feature, FormationEntry, Release, Slug,
                                       Token)


def app_ref(app: App) -> dict[str, str]:
    return {"id": app.id, "name": app.name}


def app(config: ControlConfig, app: App) -> dict[str, Any]:
    return {"id": app.id, "name": app.name, "maintenance": app.maintenance,
            "web_url": config.app_url(app.name), "created_at": app.created_at,
            "updated_at": app.updated_at}


def release(app: App, release: Release) -> dict[str, Any]:
    return {"id": release.id, "version": release.version, "description": release.description,
            "status": release.status.value, "current": release.current,
            "slug": {"id": release.slug_id} if release.slug_id else None,
            "process_types": release.process_types, "app": app_ref(app),
            "created_at": release.created_at, "updated_at": release.updated_at}


def slug(app: App, slug: Slug) -> dict[str, Any]:
    return {"id": slug.id, "checksum": slug.checksum, "size": slug.size,
            "process_types": slug.process_types, "app": app_ref(app),
            "created_at": slug.created_at}


def formation(app: App, entry: FormationEntry) -> dict[str, Any]:
    return {"type": entry.type, "quantity": entry.quantity, "size": entry.size,
            "command": entry.command, "app": app_ref(app), "updated_at": entry.updated_at}


def default_domain(config: ControlConfig, app: App) -> dict[str, Any]:
    return {"id": None, "hostname": config.default_hostname(app.name), "kind": "default",
            "app": app_ref(app), "created_at": app.created_at}


def domain(app: App, domain: Domain) -> dict[str, Any]:
    return {"id": domain.id, "hostname": domain.hostname, "kind": "custom",
            "app": app_ref(app), "created_at": domain.created_at}


def feature(feature: Feature) -> dict[str, Any]:
    return {"name": feature.name, "description": feature.description,
            "enabled": feature.enabled}


def token(token: Token) -> dict[str, Any]:
    return {"id": token.id, "role": token.role.value, "vm_id": token.vm_id,
            "description": token.description, "created_at": token.created_at}
