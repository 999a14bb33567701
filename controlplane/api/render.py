"""The JSON shapes the API returns (documented in docs/api.md), one function per resource."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from controlplane.addons import urls as addon_urls
from controlplane.config import ControlConfig
from controlplane.drains import urls as drain_urls
from controlplane.store.models import (AcmeDomain, Addon, AffinityKey, App, Build, Certificate,
                                       Domain, Drain, DrainStats, Dyno, Feature, FormationEntry,
                                       Release, Slug, Token)
from controlplane.store.vms import VmUsage


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
            "release_phase": release.has_release_phase, "phase_output": release.phase_output,
            "created_at": release.created_at, "updated_at": release.updated_at}


def build(app: App, build: Build) -> dict[str, Any]:
    return {"id": build.id, "number": build.number, "status": build.status.value,
            "source_checksum": build.source_checksum, "buildpack": build.buildpack,
            "reason": build.reason, "slug": {"id": build.slug_id} if build.slug_id else None,
            "release": ({"version": build.release_version}
                        if build.release_version is not None else None),
            "app": app_ref(app), "created_at": build.created_at,
            "finished_at": build.finished_at}


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


def certificate(app: App, cert: Certificate) -> dict[str, Any]:
    """A certificate as users see it: the leaf's facts; the private key is never rendered."""
    return {"id": cert.id, "names": list(cert.names), "not_before": cert.not_before,
            "not_after": cert.not_after, "issuer": cert.issuer, "fingerprint": cert.fingerprint,
            "source": cert.source, "domain": cert.domain, "app": app_ref(app),
            "created_at": cert.created_at}


def acm(app: App, enabled: bool, domains: list[AcmeDomain]) -> dict[str, Any]:
    """Automatic certificates of an app: on or off, and each custom domain's status
    (`pending`, `issued`, `failed` with the reason; wildcards are not managed)."""
    return {"app": app_ref(app), "enabled": enabled, "domains": [
        {"hostname": d.hostname, "status": d.status, "reason": d.reason,
         "expires_at": None if d.not_after is None else unix_iso(d.not_after),
         "next_attempt_at": None if d.retry_at is None or d.status != "failed"
         else unix_iso(d.retry_at)} for d in domains]}


def drain(drain: Drain, stats: DrainStats) -> dict[str, Any]:
    """A drain as users see it: its URL masked (it may hold a password or a key)."""
    return {"id": drain.id, "token": drain.token, "url": drain_urls.masked(drain.url),
            "app": {"id": drain.app_id, "name": drain.app}, "created_at": drain.created_at,
            "delivery": {"node": drain.owner, "sent": stats.sent, "dropped": stats.dropped,
                         "retries": stats.retries, "last_error": stats.last_error,
                         "last_error_at": None if stats.last_error_at is None
                         else unix_iso(stats.last_error_at)}}


def feature(feature: Feature) -> dict[str, Any]:
    return {"name": feature.name, "description": feature.description,
            "enabled": feature.enabled}


def token(token: Token) -> dict[str, Any]:
    return {"id": token.id, "role": token.role.value, "vm_id": token.vm_id,
            "description": token.description, "created_at": token.created_at}


def affinity_key(key: AffinityKey, *, signs: bool) -> dict[str, Any]:
    """A session affinity signing key without its secret (routers get that in the feed)."""
    return {"id": key.id, "created_at": key.created_at,
            "use": "signs and verifies" if signs else "verifies"}


def unix_iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def dyno_state(dyno: Dyno) -> str:
    """`unplaced` (no VM has room), else what its dyno manager last said; `starting` until then."""
    if dyno.vm_id is None:
        return "unplaced"
    return dyno.state.value if dyno.state is not None else "starting"


def dyno(app: App, dyno: Dyno) -> dict[str, Any]:
    return {"id": dyno.id, "name": dyno.name, "type": dyno.type, "app": app_ref(app),
            "release": {"version": dyno.release}, "size": dyno.size,
            "memory_mb": dyno.memory_mb, "state": dyno_state(dyno),
            "since": unix_iso(dyno.state_since) if dyno.state_since else dyno.created_at,
            "vm": dyno.vm_id, "address": dyno.address, "restarts": dyno.restarts,
            "reason": dyno.reason, "error_code": dyno.error_code, "serving": dyno.serving,
            "unhealthy": dyno.unhealthy,
            "taking_out": dyno.take_out.value if dyno.take_out else None,
            "restart_generation": dyno.restart_generation, "created_at": dyno.created_at,
            "one_off": one_off(dyno)}


def one_off(dyno: Dyno) -> dict[str, Any] | None:
    """A one-off dyno's command and how it runs; None for a formation dyno. Its extra env
    is shown by name only (it may carry a secret, like config vars)."""
    spec = dyno.one_off
    if spec is None:
        return None
    return {"command": spec.command, "attached": spec.attach_url is not None,
            "tty": spec.tty is not None, "env": sorted(spec.env), "timeout": spec.timeout,
            "release_phase": spec.release_phase}


def vm(usage: VmUsage, now: float) -> dict[str, Any]:
    vm = usage.vm
    return {"id": vm.id, "state": vm.state.value, "address": vm.address,
            "capacity_mb": vm.capacity_mb, "used_mb": usage.used_mb, "dynos": usage.dynos,
            "ports": list(vm.ports), "version": vm.version,
            "heartbeat_at": unix_iso(vm.heartbeat_at),
            "heartbeat_age": round(max(0.0, now - vm.heartbeat_at), 1),
            "registered_at": vm.registered_at, "lost_at": vm.lost_at,
            "stack": {"interpreters": vm.stack.get("interpreters", [])}}


def addon(addon: Addon, config_value: str | None, location: str | None) -> dict[str, Any]:
    """`config_value` is the app's own config var, shown with its password masked (Heroku
    shows an add-on's var by name only; `GET .../config-vars` has it whole); `location` the
    provider's server as host:port, never its admin credentials."""
    shown = (addon_urls.masked(config_value) if config_value is not None and addon.attached
             else None)
    return {"id": addon.id, "name": addon.name, "kind": addon.kind,
            "app": {"id": addon.app_id, "name": addon.app_name}, "state": addon.state.value,
            "config_var": addon.config_var, "config_value_masked": shown,
            "resource": addon.resource, "location": location,
            "created_at": addon.created_at, "updated_at": addon.updated_at}
