"""Assignment entries: what a dyno manager is told to run (docs/feeds.md, "Assignment feed").

Pure: `assignment_entries` turns the store's assignments of one VM into the entries its feed
carries, keyed by dyno id, so the wire shape lives in one place next to the route entries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from controlplane.store.models import Assignment

log = logging.getLogger(__name__)


def slug_url(base_url: str, slug_id: str) -> str:
    return f"{base_url.rstrip('/')}/slugs/{slug_id}/download"


def attach_url(node_url: str, vm_id: str, dyno_id: str) -> str:
    """Where a one-off dyno's dyno manager joins its caller's session (docs/attach.md)."""
    return f"{node_url.rstrip('/')}/vms/{vm_id}/dynos/{dyno_id}/attach"


def _one_off_fields(assignment: Assignment) -> dict[str, Any]:
    dyno, spec = assignment.dyno, assignment.dyno.one_off
    if spec is None:
        return {"kind": "formation", "env": assignment.config}
    attach = (attach_url(spec.attach_url, dyno.vm_id, dyno.id)
              if spec.attach_url is not None and dyno.vm_id is not None else None)
    return {"kind": "one-off", "env": {**assignment.config, **spec.env},
            "command": spec.command, "attach": attach,
            "tty": list(spec.tty) if spec.tty else None, "timeout": spec.timeout}


def _health_fields(assignment: Assignment) -> dict[str, Any]:
    """The app's health check, for its formation's web dynos only (the ones routers reach);
    interval and failures only when the app set them (else the dyno manager's flags)."""
    dyno = assignment.dyno
    path = assignment.health_check_path
    if path is None or not dyno.is_web or dyno.one_off is not None:
        return {"health_check": None}
    fields: dict[str, Any] = {"health_check": path}
    if assignment.health_check_interval is not None:
        fields["health_check_interval"] = assignment.health_check_interval
    if assignment.health_check_failures is not None:
        fields["health_check_failures"] = assignment.health_check_failures
    return fields


def assignment_entries(assignments: Iterable[Assignment],
                       base_url: str) -> dict[str, dict[str, Any]]:
    """dyno id -> its assignment entry; `base_url` is where dyno managers fetch slugs."""
    entries: dict[str, dict[str, Any]] = {}
    for assignment in assignments:
        dyno = assignment.dyno
        if assignment.slug_id is None or assignment.checksum is None:
            # Dynos are only made for releases with a slug: this is a bug, not a user error.
            log.error("feeds: dyno %s of %s has no slug (release v%d); not assigned",
                      dyno.name, assignment.app_name, dyno.release)
            continue
        entries[dyno.id] = {
            "id": dyno.id, "app": assignment.app_name, "name": dyno.name,
            "type": dyno.type, "release": dyno.release,
            "slug": {"url": slug_url(base_url, assignment.slug_id),
                     "sha256": assignment.checksum.removeprefix("sha256:")},
            "memory_mb": dyno.memory_mb, **_health_fields(assignment),
            "restart": dyno.restart_generation, **_one_off_fields(assignment)}
    return entries
