"""The scheduler's reads and writes, inside the one write transaction of a scheduling pass.

    async with store.fleet.scheduling(epoch) as fleet:  # NotLeader if another node claimed
        for app, dynos in await fleet.apps(await fleet.changed_apps(seen)):
            ...

A pass is fenced by the leader epoch (`nodes.check_epoch`) before it reads anything. Every
write records the feed changes it makes in the same transaction: `assignments` for each VM a
dyno enters or leaves, `routes` when a web dyno's app entry may show it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Collection, Sequence

from controlplane import sizes
from controlplane.store import errors
from controlplane.store.affinity import KEYS_CHANGE
from controlplane.store.database import Database, Transaction, fetch_for
from controlplane.store.dynos import WITH_APP_NAME, remove_now, restart_now, start_take_out
from controlplane.store.dynos import with_app_name
from controlplane.store.models import (AppSpec, Dyno, NewDyno, NodeProgress, ProcessSpec,
                                       TakeOut, Vm, VmLoad, now_iso)
from controlplane.store.nodes import check_epoch, other_nodes
from controlplane.store.oneoffs import finish
from controlplane.store.pool import cordoned
from controlplane.store.releases import runnable_versions
from controlplane.store.revision import Feed
from controlplane.store.vms import all_vms, vm_loads


class FleetStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @contextlib.asynccontextmanager
    async def scheduling(self, epoch: int) -> AsyncIterator["FleetPass"]:
        """One pass's write transaction, if `epoch` still leads (else `errors.NotLeader`)."""
        async with self._db.write() as tx:
            await check_epoch(tx, epoch)
            yield FleetPass(tx)


class FleetPass:
    """Dynos, VMs and apps as one scheduling pass sees and changes them."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    # --- what a pass reads ---

    async def revision(self) -> int:
        return await self._tx.current_revision()

    async def changed_apps(self, since: int | None) -> set[str] | None:
        """Apps whose routes or formation changed after `since` (None: every app, also when
        that history is gone)."""
        if since is None:
            return None
        apps: set[str] = set()
        for feed in (Feed.ROUTES, Feed.FORMATION):
            try:
                changes = await self._tx.changes_since(feed, since)
            except errors.HistoryExpired:
                return None
            apps |= {change.key for change in changes.changes}
        apps.discard(KEYS_CHANGE)  # the routers' signing keys, not an app
        return apps

    async def vms(self) -> list[Vm]:
        return await all_vms(self._tx)

    async def vm_loads(self) -> dict[str, VmLoad]:
        """VM id -> what is placed on it (VMs with nothing placed are absent)."""
        return await vm_loads(self._tx)

    async def other_nodes(self, node_id: str) -> list[NodeProgress]:
        return await other_nodes(self._tx, node_id)

    async def taken_out(self) -> list[tuple[Dyno, str]]:
        """Dynos being taken out, with their app's name, oldest take-out first."""
        return with_app_name(await self._tx.fetch(
            f"{WITH_APP_NAME} WHERE d.take_out IS NOT NULL ORDER BY d.take_out_revision, d.id"))

    async def dynos_on(self, vm_id: str) -> list[tuple[Dyno, str]]:
        return with_app_name(await self._tx.fetch(
            f"{WITH_APP_NAME} WHERE d.vm_id = $1 ORDER BY d.created_at, d.id", vm_id))

    async def cordoned(self) -> set[str]:
        """VMs the pool is draining or terminating: nothing new is placed there."""
        return await cordoned(self._tx)

    async def draining(self, vm_ids: Collection[str]) -> list[tuple[Dyno, str]]:
        """The dynos on these (cordoned) VMs."""
        if not vm_ids:
            return []
        return with_app_name(await fetch_for(
            self._tx, f"{WITH_APP_NAME} WHERE TRUE", "d.vm_id", sorted(vm_ids),
            order="d.created_at, d.id"))

    async def twins(self) -> list[tuple[Dyno, str]]:
        """Drain twins (dynos that take over from one on a draining VM)."""
        return with_app_name(await self._tx.fetch(
            f"{WITH_APP_NAME} WHERE d.replaces IS NOT NULL ORDER BY d.created_at, d.id"))

    async def unplaced(self) -> list[tuple[Dyno, str]]:
        return with_app_name(await self._tx.fetch(
            f"{WITH_APP_NAME} WHERE d.vm_id IS NULL ORDER BY d.created_at, d.id"))

    async def apps(self, names: Collection[str] | None) -> list[tuple[AppSpec, list[Dyno]]]:
        """What each app named (all apps if None) should run, and the dynos it has."""
        tx = self._tx
        apps = await fetch_for(tx, "SELECT id, name FROM apps WHERE TRUE", "name",
                               None if names is None else sorted(names), order="name")
        if not apps:
            return []
        ids = None if names is None else [a["id"] for a in apps]
        releases = await runnable_versions(tx, ids)
        processes: dict[str, dict[str, ProcessSpec]] = {}
        for row in await fetch_for(tx, "SELECT app_id, type, quantity, size FROM formation "
                                   "WHERE TRUE", "app_id", ids):
            size = sizes.lookup(row["size"]) or sizes.SIZES[sizes.DEFAULT_SIZE]
            processes.setdefault(row["app_id"], {})[row["type"]] = ProcessSpec(
                row["type"], int(row["quantity"]), size.name, size.memory_mb)
        preboot = {r["app_id"] for r in await fetch_for(
            tx, "SELECT app_id FROM app_features WHERE name = 'preboot' AND enabled = 1",
            "app_id", ids)}
        dynos: dict[str, list[Dyno]] = {}
        for row in await fetch_for(tx, "SELECT * FROM dynos WHERE TRUE", "app_id", ids,
                                   order="type, number, created_at, id"):
            dynos.setdefault(row["app_id"], []).append(Dyno.from_row(row))
        return [(AppSpec(app["id"], app["name"], releases.get(app["id"]),
                         processes.get(app["id"], {}), app["id"] in preboot),
                 dynos.get(app["id"], [])) for app in apps]

    # --- what a pass writes ---

    async def create_dyno(self, app: AppSpec, new: NewDyno, vm_id: str | None) -> str:
        """Create `new` on `vm_id` (None: unplaced); return its id."""
        dyno_id = f"d-{uuid.uuid4().hex}"
        await self._tx.execute(
            "INSERT INTO dynos (id, app_id, type, number, release_version, size, memory_mb, "
            "vm_id, serving, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            dyno_id, app.id, new.type, new.number, new.release, new.size, new.memory_mb,
            vm_id, int(new.serving), now_iso())
        if vm_id is not None:
            await self._tx.record_change(Feed.ASSIGNMENTS, vm_id)
        if new.type == "web":
            await self._tx.record_change(Feed.ROUTES, app.name)  # booting, or H14 unplaced
        return dyno_id

    async def create_twin(self, original: Dyno, app_name: str, vm_id: str) -> str:
        """A twin of `original` on `vm_id`; a web twin serves only once switched to."""
        dyno_id = f"d-{uuid.uuid4().hex}"
        await self._tx.execute(
            "INSERT INTO dynos (id, app_id, type, number, release_version, size, memory_mb, "
            "vm_id, serving, created_at, replaces) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
            "$10, $11)", dyno_id, original.app_id, original.type, original.number,
            original.release, original.size, original.memory_mb, vm_id,
            int(not original.is_web), now_iso(), original.id)
        await self._tx.record_change(Feed.ASSIGNMENTS, vm_id)
        return dyno_id

    async def switch_to_twin(self, original: Dyno, twin: Dyno, app_name: str,
                             now: float) -> None:
        """The twin takes over in one step: a web twin serves and the original leaves the
        routes (stopped once routers have it); a worker's original is removed."""
        await self._tx.execute("UPDATE dynos SET serving = 1, replaces = NULL WHERE id = $1",
                               twin.id)
        if original.is_web:
            await start_take_out(self._tx, original, app_name, TakeOut.STOP, now)
            await self._tx.record_change(Feed.ROUTES, app_name)
        else:
            await remove_now(self._tx, original, app_name)

    async def place(self, dyno: Dyno, app_name: str, vm_id: str | None) -> None:
        """Put a dyno on `vm_id` (None: unplaced), leaving its old VM in the same transaction,
        so a dyno never is in two VMs' assignments. What was observed on the old VM is
        forgotten."""
        await self._tx.execute(
            "UPDATE dynos SET vm_id = $1, state = NULL, address = NULL, state_since = NULL, "
            "reason = NULL, error_code = NULL, take_out = NULL, take_out_revision = NULL, "
            "take_out_at = NULL WHERE id = $2", vm_id, dyno.id)
        for vm in {dyno.vm_id, vm_id} - {None}:
            await self._tx.record_change(Feed.ASSIGNMENTS, vm)
        if dyno.is_web:
            await self._tx.record_change(Feed.ROUTES, app_name)

    async def rerelease(self, dyno: Dyno, release: int) -> None:
        """Run a dyno on another release in place (its dyno manager restarts it)."""
        await self._tx.execute("UPDATE dynos SET release_version = $1 WHERE id = $2",
                               release, dyno.id)
        if dyno.vm_id is not None:
            await self._tx.record_change(Feed.ASSIGNMENTS, dyno.vm_id)

    async def serve(self, dynos: Sequence[Dyno], app_name: str) -> None:
        """Let the app's route entry list these dynos (a preboot switch: all at once)."""
        for dyno in dynos:
            await self._tx.execute("UPDATE dynos SET serving = 1 WHERE id = $1", dyno.id)
        await self._tx.record_change(Feed.ROUTES, app_name)

    async def mark_lost(self, vm: Vm) -> None:
        await self._tx.execute("UPDATE vms SET state = 'lost', lost_at = $1 WHERE id = $2",
                               now_iso(), vm.id)
        await self._tx.record_change(Feed.ASSIGNMENTS, vm.id)

    async def start_take_out(self, dyno: Dyno, app_name: str, then: TakeOut,
                             now: float) -> None:
        """Take `dyno` out of the route feed now; `then` happens once routers have it."""
        await start_take_out(self._tx, dyno, app_name, then, now)

    async def restart(self, dyno: Dyno, app_name: str) -> None:
        """Bump the dyno's restart generation: its dyno manager restarts it."""
        await restart_now(self._tx, dyno, app_name)

    async def end_one_off(self, dyno: Dyno, app_name: str, reason: str) -> None:
        """A one-off dyno that cannot go on (its VM was lost): removed, not placed elsewhere;
        a release phase fails its release."""
        await finish(self._tx, dyno, app_name, exit_status=None, output=None, reason=reason)

    async def remove(self, dyno: Dyno, app_name: str) -> None:
        """Delete the dyno: its VM's assignments drop it."""
        await remove_now(self._tx, dyno, app_name)
