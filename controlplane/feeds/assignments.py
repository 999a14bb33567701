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
            "id": dyno.id, "kind": "formation", "app": assignment.app_name, "name": dyno.name,
            "type": dyno.type, "release": dyno.release,
            "slug": {"url": slug_url(base_url, assignment.slug_id),
                     "sha256": assignment.checksum.removeprefix("sha256:")},
            "env": assignment.config, "memory_mb": dyno.memory_mb,
            "health_check": None, "restart": dyno.restart_generation}
    return entries
