"""Builds: a source upload turned into a slug and a release (controlplane/builds/).

A build is recorded `pending` before it runs, with the node that runs it, and settles once:
`succeeded` in the same transaction that records its slug and creates its release (so a crash
never leaves a succeeded build without its release, or a release without its build), or
`failed` with a one-line reason. Its output is written when it settles. A node that restarts
after a crash fails the builds that no running node holds (`fail_orphans`).

Build rows take no part in the revision order: no feed serves them; the release they make
records its own changes (store/releases.py).
"""

from __future__ import annotations

import uuid

from controlplane.store import errors
from controlplane.store.apps import require_app
from controlplane.store.database import Database, Transaction
from controlplane.store.models import Build, BuildStatus, Release, ReleaseStatus, now_iso
from controlplane.store.releases import config_vars, insert_release, insert_slug

_LIST_COLUMNS = ("id, app_id, number, status, source_checksum, buildpack, reason, slug_id, "
                 "release_version, node, created_at, finished_at")


class BuildStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(self, ident: str, *, source_checksum: str, node: str) -> Build:
        async with self._db.write_unordered() as tx:
            app = await require_app(tx, ident)
            number = int(await tx.fetchval(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE app_id = $1", app.id))
            build_id = str(uuid.uuid4())
            await tx.execute(
                "INSERT INTO builds (id, app_id, number, status, source_checksum, node, "
                "created_at) VALUES ($1, $2, $3, 'pending', $4, $5, $6)",
                build_id, app.id, number, source_checksum, node, now_iso())
            return Build.from_row(await tx.fetchrow(
                f"SELECT {_LIST_COLUMNS} FROM builds WHERE id = $1", build_id))

    async def succeed(self, build_id: str, *, buildpack: str | None, output: str, slug_id: str,
                      checksum: str, size: int, process_types: dict[str, str],
                      description: str) -> Release:
        """Record the slug, create its release and settle the build, in one transaction."""
        async with self._db.write() as tx:
            build = await self._pending(tx, build_id)
            app = await require_app(tx, build.app_id)
            slug = await insert_slug(tx, app, slug_id=slug_id, checksum=checksum, size=size,
                                     process_types=process_types)
            release = await insert_release(tx, app, slug=slug, config=await config_vars(tx, app),
                                           description=description,
                                           status=ReleaseStatus.SUCCEEDED, release_phase=True)
            await tx.execute(
                "UPDATE builds SET status = 'succeeded', buildpack = $1, output = $2, "
                "slug_id = $3, release_version = $4, finished_at = $5 WHERE id = $6",
                buildpack, output, slug.id, release.version, now_iso(), build_id)
            return release

    async def fail(self, build_id: str, *, reason: str, output: str,
                   buildpack: str | None = None) -> None:
        async with self._db.write_unordered() as tx:
            await self._pending(tx, build_id)
            await tx.execute(
                "UPDATE builds SET status = 'failed', reason = $1, output = $2, buildpack = $3, "
                "finished_at = $4 WHERE id = $5", reason, output, buildpack, now_iso(), build_id)

    async def fail_orphans(self, live_nodes: set[str]) -> int:
        """Fail the pending builds of nodes not in `live_nodes` (they stopped mid-build)."""
        async with self._db.write_unordered() as tx:
            orphans = [row["id"] for row in await tx.fetch(
                "SELECT id, node FROM builds WHERE status = 'pending'")
                if row["node"] not in live_nodes]
            for build_id in orphans:
                await tx.execute(
                    "UPDATE builds SET status = 'failed', finished_at = $1, reason = "
                    "'interrupted: the control plane stopped during the build; deploy again' "
                    "WHERE id = $2 AND status = 'pending'", now_iso(), build_id)
            return len(orphans)

    async def list(self, ident: str, *, limit: int = 100) -> list[Build]:
        async with self._db.read() as tx:
            app = await require_app(tx, ident)
            rows = await tx.fetch(
                f"SELECT {_LIST_COLUMNS} FROM builds WHERE app_id = $1 ORDER BY number DESC "
                "LIMIT $2", app.id, limit)
            return [Build.from_row(row) for row in rows]

    async def get(self, ident: str, ref: str, *, with_output: bool = False) -> Build:
        """One build by number (`3`) or id; with its kept output if asked."""
        columns = _LIST_COLUMNS + (", output" if with_output else "")
        async with self._db.read() as tx:
            app = await require_app(tx, ident)
            if ref.isdigit():
                row = await tx.fetchrow(f"SELECT {columns} FROM builds WHERE app_id = $1 "
                                        "AND number = $2", app.id, int(ref))
            else:
                row = await tx.fetchrow(f"SELECT {columns} FROM builds WHERE app_id = $1 "
                                        "AND id = $2", app.id, ref)
            if row is None:
                raise errors.NotFound(f"{app.name} has no build {ref}: `dynomesh builds` "
                                      "lists them")
            return Build.from_row(row)

    @staticmethod
    async def _pending(tx: Transaction, build_id: str) -> Build:
        row = await tx.fetchrow(f"SELECT {_LIST_COLUMNS} FROM builds WHERE id = $1", build_id)
        if row is None:
            raise errors.NotFound(f"build {build_id} is gone (its app was destroyed)")
        build = Build.from_row(row)
        if build.status is not BuildStatus.PENDING:
            raise errors.Conflict(f"build {build.number} already {build.status.value}")
        return build
