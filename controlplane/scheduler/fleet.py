"""The scheduler's reads and writes, inside the one transaction of a scheduling pass.

Leadership is fenced here: the node that wins the leader lock bumps `scheduler_leader.epoch`,
and every pass first checks that the epoch is still its own. All writers take the revision
row lock first, so a deposed leader's next pass is serialised after the new leader's claim,
sees the new epoch and stops before it writes anything.

Control nodes sharing a PostgreSQL database publish how far their route-feed followers got
(`control_nodes`), so the leader knows when every router has a dyno out of its table.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from controlplane import sizes
from controlplane.feeds.state import current_runnable_releases, fetch_for
from controlplane.scheduler.placement import DynoRequest, VmRoom
from controlplane.scheduler.planner import AppSpec, Create, ProcessSpec
from controlplane.store import errors
from controlplane.store.database import Database, Transaction
from controlplane.store.models import Dyno, Vm, now_iso
from controlplane.store.revision import Feed


# NOTIFY channel on which a node says its route followers got further (wakes the leader).
PROGRESS_CHANNEL = "dynomesh_progress"


class NotLeader(errors.StoreError):
    """Another control node claimed scheduling since this one did."""


@dataclass(frozen=True)
class NodeProgress:
    id: str
    seen_at: float
    route_followers: int
    route_revision: int


# --- leadership and control nodes ---

async def claim_leadership(db: Database, node_id: str, now: float) -> int:
    """Record this node as the scheduler; return its epoch (the fence for its passes)."""
    async with db.write() as tx:
        return int(await tx.fetchval(
            "UPDATE scheduler_leader SET epoch = epoch + 1, node = $1, since = $2 WHERE id = 1 "
            "RETURNING epoch", node_id, now))


async def check_epoch(tx: Transaction, epoch: int) -> None:
    current = int(await tx.fetchval("SELECT epoch FROM scheduler_leader WHERE id = 1"))
    if current != epoch:
        raise NotLeader(f"scheduler epoch is {current}, this node holds {epoch}")


async def leader(db: Database) -> tuple[str | None, float | None]:
    async with db.read() as tx:
        row = await tx.fetchrow("SELECT node, since FROM scheduler_leader WHERE id = 1")
    return row["node"], row["since"]


async def publish_node(db: Database, node: NodeProgress, *, started_at: float) -> None:
    async with db.write() as tx:
        changed = await tx.execute(
            "UPDATE control_nodes SET seen_at = $1, route_followers = $2, route_revision = $3 "
            "WHERE id = $4", node.seen_at, node.route_followers, node.route_revision, node.id)
        if not changed:
            await tx.execute(
                "INSERT INTO control_nodes (id, started_at, seen_at, route_followers, "
                "route_revision) VALUES ($1, $2, $3, $4, $5)", node.id, started_at,
                node.seen_at, node.route_followers, node.route_revision)
        await tx.notify(PROGRESS_CHANNEL, node.id)


async def forget_node(db: Database, node_id: str) -> None:
    async with db.write() as tx:
        await tx.execute("DELETE FROM control_nodes WHERE id = $1", node_id)


async def other_nodes(tx: Transaction, node_id: str) -> list[NodeProgress]:
    rows = await tx.fetch("SELECT * FROM control_nodes WHERE id <> $1", node_id)
    return [NodeProgress(r["id"], float(r["seen_at"]), int(r["route_followers"]),
                         int(r["route_revision"])) for r in rows]


# --- what a pass reads ---

async def load_vms(tx: Transaction) -> list[Vm]:
    return [Vm.from_row(r) for r in await tx.fetch("SELECT * FROM vms ORDER BY id")]


async def load_taken_out(tx: Transaction) -> list[tuple[Dyno, str]]:
    rows = await tx.fetch(
        "SELECT d.*, a.name AS app_name FROM dynos d JOIN apps a ON a.id = d.app_id "
        "WHERE d.take_out IS NOT NULL ORDER BY d.take_out_revision, d.id")
    return [(Dyno.from_row(r), r["app_name"]) for r in rows]


async def load_dynos_on(tx: Transaction, vm_id: str) -> list[tuple[Dyno, str]]:
    rows = await tx.fetch(
        "SELECT d.*, a.name AS app_name FROM dynos d JOIN apps a ON a.id = d.app_id "
        "WHERE d.vm_id = $1 ORDER BY d.created_at, d.id", vm_id)
    return [(Dyno.from_row(r), r["app_name"]) for r in rows]


async def load_unplaced(tx: Transaction) -> list[tuple[Dyno, str]]:
    rows = await tx.fetch(
        "SELECT d.*, a.name AS app_name FROM dynos d JOIN apps a ON a.id = d.app_id "
        "WHERE d.vm_id IS NULL ORDER BY d.created_at, d.id")
    return [(Dyno.from_row(r), r["app_name"]) for r in rows]


async def load_apps(tx: Transaction, names: Collection[str] | None
                    ) -> list[tuple[AppSpec, list[Dyno]]]:
    """Specs and dynos of the apps named (all apps if None)."""
    apps = await fetch_for(tx, "SELECT id, name FROM apps WHERE TRUE", "name",
                           None if names is None else sorted(names), order="name")
    if not apps:
        return []
    ids = None if names is None else [a["id"] for a in apps]
    releases = await current_runnable_releases(tx, ids)
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
    specs = []
    for app in apps:
        release = releases.get(app["id"])
        specs.append((AppSpec(app["id"], app["name"],
                              None if release is None else int(release["version"]),
                              processes.get(app["id"], {}), app["id"] in preboot),
                      dynos.get(app["id"], [])))
    return specs


async def vm_rooms(tx: Transaction, vms: Sequence[Vm]) -> list[VmRoom]:
    """Room on each ready VM: memory and ports already taken, dynos per app."""
    used: dict[str, int] = {}
    web: dict[str, int] = {}
    apps: dict[str, dict[str, int]] = {}
    for row in await tx.fetch(
            "SELECT vm_id, app_id, type, COUNT(*) AS n, SUM(memory_mb) AS mb FROM dynos "
            "WHERE vm_id IS NOT NULL GROUP BY vm_id, app_id, type"):
        vm_id = row["vm_id"]
        used[vm_id] = used.get(vm_id, 0) + int(row["mb"])
        if row["type"] == "web":
            web[vm_id] = web.get(vm_id, 0) + int(row["n"])
        per_app = apps.setdefault(vm_id, {})
        per_app[row["app_id"]] = per_app.get(row["app_id"], 0) + int(row["n"])
    return [VmRoom(vm.id, vm.capacity_mb, used.get(vm.id, 0),
                   vm.ports[1] - vm.ports[0] + 1 - web.get(vm.id, 0), apps.get(vm.id, {}))
            for vm in vms]


def request_for(dyno: Dyno) -> DynoRequest:
    return DynoRequest(dyno.app_id, dyno.memory_mb, dyno.is_web)


# --- what a pass writes ---

async def create_dyno(tx: Transaction, app: AppSpec, create: Create, vm_id: str | None) -> str:
    dyno_id = f"d-{uuid.uuid4().hex}"
    await tx.execute(
        "INSERT INTO dynos (id, app_id, type, number, release_version, size, memory_mb, vm_id, "
        "serving, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", dyno_id,
        app.id, create.type, create.number, create.release, create.size, create.memory_mb,
        vm_id, int(create.serving), now_iso())
    if vm_id is not None:
        await tx.record_change(Feed.ASSIGNMENTS, vm_id)
    if create.type == "web":
        await tx.record_change(Feed.ROUTES, app.name)  # booting, or H14 when unplaced
    return dyno_id


async def place_dyno(tx: Transaction, dyno: Dyno, app_name: str, vm_id: str | None) -> None:
    """Put a dyno on `vm_id` (None: unplaced), leaving its old VM in the same transaction, so
    a dyno never is in two VMs' assignments. What was observed on the old VM is forgotten."""
    await tx.execute(
        "UPDATE dynos SET vm_id = $1, state = NULL, address = NULL, state_since = NULL, "
        "reason = NULL, error_code = NULL, take_out = NULL, take_out_revision = NULL, "
        "take_out_at = NULL WHERE id = $2", vm_id, dyno.id)
    for vm in {dyno.vm_id, vm_id} - {None}:
        await tx.record_change(Feed.ASSIGNMENTS, vm)
    if dyno.is_web:
        await tx.record_change(Feed.ROUTES, app_name)


async def rerelease(tx: Transaction, dyno: Dyno, release: int) -> None:
    await tx.execute("UPDATE dynos SET release_version = $1 WHERE id = $2", release, dyno.id)
    if dyno.vm_id is not None:
        await tx.record_change(Feed.ASSIGNMENTS, dyno.vm_id)


async def serve(tx: Transaction, dynos: Sequence[Dyno], app_name: str) -> None:
    for dyno in dynos:
        await tx.execute("UPDATE dynos SET serving = 1 WHERE id = $1", dyno.id)
    await tx.record_change(Feed.ROUTES, app_name)


async def mark_lost(tx: Transaction, vm: Vm) -> None:
    await tx.execute("UPDATE vms SET state = 'lost', lost_at = $1 WHERE id = $2", now_iso(),
                     vm.id)
    await tx.record_change(Feed.ASSIGNMENTS, vm.id)
