"""The VM pool's state: the VMs it launched, its limits, its last provider error, the
instances nobody knows (controlplane/pool/ decides; this keeps what it decided).

The leader's writes are fenced by the scheduler epoch (`nodes.check_epoch`), like a scheduling
pass: a deposed leader cannot launch, drain or forget a VM after another node took over.
Removing a VM's row takes its dynos off it in the same transaction (they become unplaced and
the scheduler places them elsewhere), so no dyno stays assigned to a VM nobody runs.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Mapping

from controlplane.store import errors
from controlplane.store.database import Database, Transaction
from controlplane.store.dynos import WITH_APP_NAME, with_app_name
from controlplane.store.models import Vm, VmLoad
from controlplane.store.nodes import check_epoch
from controlplane.store.revision import Feed
from controlplane.store.vms import all_vms, vm_loads


class PoolVmState(str, enum.Enum):
    LAUNCHING = "launching"  # decided (and maybe asked for); its agent has not registered
    ACTIVE = "active"  # its agent registered: it takes dynos
    DRAINING = "draining"  # takes no new dynos; its dynos get twins elsewhere
    TERMINATING = "terminating"  # its instance is being terminated


# The change key that wakes the pool leader (not a VM id: those cannot hold ':').
POOL_KEY = "pool:"
# VMs the scheduler places nothing new on.
CORDONED = (PoolVmState.DRAINING.value, PoolVmState.TERMINATING.value)


@dataclass(frozen=True)
class PoolVm:
    vm_id: str
    provider: str
    instance_id: str | None
    state: PoolVmState
    capacity_mb: int
    token_id: str | None
    launched_at: float
    state_since: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "PoolVm":
        return cls(row["vm_id"], row["provider"], row["instance_id"],
                   PoolVmState(row["state"]), int(row["capacity_mb"]), row["token_id"],
                   float(row["launched_at"]), float(row["state_since"]))


@dataclass(frozen=True)
class ProviderFailure:
    """The last error a provider call ended with, as the provider named it."""

    code: str
    message: str
    operation: str
    at: float


@dataclass(frozen=True)
class PoolSettings:
    min_vms: int | None  # None: the control node's --pool-min
    max_vms: int | None
    error: ProviderFailure | None
    unknown: list[dict[str, Any]]  # instances the provider shows that no pool row knows
    reconciled_at: float | None


@dataclass(frozen=True)
class PoolSnapshot:
    """What the pool policy looks at, read in one transaction."""

    settings: PoolSettings
    pool: list[PoolVm]
    vms: dict[str, Vm]  # every registered VM, pool or not
    loads: dict[str, VmLoad]
    dyno_memory: dict[str, list[int]]  # VM id -> memory of each dyno placed there
    waiting_mb: list[int]  # memory of each unplaced dyno


async def pool_vms(tx: Transaction) -> list[PoolVm]:
    return [PoolVm.from_row(r) for r in
            await tx.fetch("SELECT * FROM pool_vms ORDER BY launched_at, vm_id")]


async def cordoned(tx: Transaction) -> set[str]:
    """VMs the pool is draining or terminating: placement skips them."""
    rows = await tx.fetch("SELECT vm_id FROM pool_vms WHERE state IN ($1, $2)", *CORDONED)
    return {r["vm_id"] for r in rows}


async def _settings(tx: Transaction) -> PoolSettings:
    row = await tx.fetchrow("SELECT * FROM pool_settings WHERE id = 1")
    error = None
    if row["error_code"] is not None:
        error = ProviderFailure(row["error_code"], row["error_message"] or "",
                                row["error_operation"] or "", float(row["error_at"]))
    return PoolSettings(
        None if row["min_vms"] is None else int(row["min_vms"]),
        None if row["max_vms"] is None else int(row["max_vms"]), error,
        json.loads(row["unknown_instances"]),
        None if row["reconciled_at"] is None else float(row["reconciled_at"]))


async def delete_vm(tx: Transaction, vm_id: str) -> int:
    """Remove a VM's row; its dynos become unplaced (the scheduler places them elsewhere).
    Returns how many dynos it had."""
    dynos = with_app_name(await tx.fetch(f"{WITH_APP_NAME} WHERE d.vm_id = $1", vm_id))
    if dynos:
        await tx.execute(
            "UPDATE dynos SET vm_id = NULL, state = NULL, address = NULL, state_since = NULL, "
            "reason = NULL, error_code = NULL, take_out = NULL, take_out_revision = NULL, "
            "take_out_at = NULL WHERE vm_id = $1", vm_id)
        for app_name in {name for dyno, name in dynos if dyno.is_web}:
            await tx.record_change(Feed.ROUTES, app_name)
        for app_name in {name for _, name in dynos}:
            await tx.record_change(Feed.FORMATION, app_name)
    await tx.execute("DELETE FROM vms WHERE id = $1", vm_id)
    await tx.record_change(Feed.ASSIGNMENTS, vm_id)
    return len(dynos)


async def _revoke_vm_tokens(tx: Transaction, vm_id: str) -> int:
    return await tx.execute("DELETE FROM tokens WHERE role = 'dynomgr' AND vm_id = $1", vm_id)


@dataclass(frozen=True)
class Removal:
    vm_id: str
    dynos: int  # dynos it had, now unplaced
    tokens: int  # dynomgr tokens revoked
    terminating: bool  # a pool VM: its instance is terminated by the pool


class PoolStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- what anyone reads ---

    async def settings(self) -> PoolSettings:
        async with self._db.read() as tx:
            return await _settings(tx)

    async def lost_since(self) -> list[tuple[str, str]]:
        """(VM id, lost_at) of every lost VM that is not a pool VM (the retention's clock)."""
        async with self._db.read() as tx:
            rows = await tx.fetch(
                "SELECT id, lost_at FROM vms WHERE state = 'lost' AND lost_at IS NOT NULL "
                "AND id NOT IN (SELECT vm_id FROM pool_vms) ORDER BY id")
            return [(r["id"], r["lost_at"]) for r in rows]

    async def snapshot(self) -> PoolSnapshot:
        async with self._db.read() as tx:
            memory: dict[str, list[int]] = {}
            waiting: list[int] = []
            for row in await tx.fetch("SELECT vm_id, memory_mb FROM dynos "
                                      "ORDER BY memory_mb DESC, id"):
                if row["vm_id"] is None:
                    waiting.append(int(row["memory_mb"]))
                else:
                    memory.setdefault(row["vm_id"], []).append(int(row["memory_mb"]))
            return PoolSnapshot(await _settings(tx), await pool_vms(tx),
                                {vm.id: vm for vm in await all_vms(tx)}, await vm_loads(tx),
                                memory, waiting)

    # --- what an operator changes ---

    async def set_limits(self, min_vms: int | None, max_vms: int | None) -> PoolSettings:
        """Set either limit (None leaves it); Invalid if min would exceed max."""
        async with self._db.write() as tx:
            current = await _settings(tx)
            low = current.min_vms if min_vms is None else min_vms
            high = current.max_vms if max_vms is None else max_vms
            if low is not None and high is not None and low > high:
                raise errors.Invalid(f"min={low} is more than max={high}: the pool cannot keep "
                                     "more VMs than it may have")
            await tx.execute("UPDATE pool_settings SET min_vms = $1, max_vms = $2 WHERE id = 1",
                             low, high)
            await tx.record_change(Feed.ASSIGNMENTS, POOL_KEY)  # wakes the pool leader
            return await _settings(tx)

    async def remove_vm(self, vm_id: str, *, force: bool) -> Removal:
        """An operator removes a VM: its row goes, its dynomgr tokens are revoked (so its
        agent cannot register it again) and its dynos are placed elsewhere. A pool VM's
        instance is terminated by the pool. A live VM with dynos needs `force`."""
        async with self._db.write() as tx:
            row = await tx.fetchrow("SELECT * FROM vms WHERE id = $1", vm_id)
            pool_row = await tx.fetchrow("SELECT * FROM pool_vms WHERE vm_id = $1", vm_id)
            if row is None and pool_row is None:
                raise errors.NotFound(f"VM {vm_id!r} is not known: `dynomesh vms` lists them")
            dynos = int(await tx.fetchval("SELECT COUNT(*) FROM dynos WHERE vm_id = $1", vm_id))
            live = row is not None and row["state"] == "ready"
            if live and dynos and not force:
                raise errors.Conflict(
                    f"VM {vm_id} is live and runs {dynos} dyno{'s' if dynos != 1 else ''}: "
                    f"stop its dyno manager first (it is then lost and its dynos move), or "
                    f"`dynomesh vms:remove {vm_id} --force` to move them now (they restart "
                    "elsewhere)")
            moved = await delete_vm(tx, vm_id) if row is not None else 0
            revoked = await _revoke_vm_tokens(tx, vm_id)
            if pool_row is not None:
                await tx.execute("UPDATE pool_vms SET state = 'terminating' WHERE vm_id = $1",
                                 vm_id)
                await tx.record_change(Feed.ASSIGNMENTS, POOL_KEY)
            return Removal(vm_id, moved, revoked, pool_row is not None)

    # --- what the pool leader writes (fenced by its scheduler epoch) ---

    async def add_launching(self, epoch: int, vm: PoolVm) -> None:
        async with self._db.write() as tx:
            await check_epoch(tx, epoch)
            await tx.execute(
                "INSERT INTO pool_vms (vm_id, provider, instance_id, state, capacity_mb, "
                "token_id, launched_at, state_since) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                vm.vm_id, vm.provider, vm.instance_id, vm.state.value, vm.capacity_mb,
                vm.token_id, vm.launched_at, vm.state_since)
            await tx.record_change(Feed.ASSIGNMENTS, POOL_KEY)  # `dynomesh pool` shows it

    async def set_instance(self, epoch: int, vm_id: str, instance_id: str) -> None:
        async with self._db.write() as tx:
            await check_epoch(tx, epoch)
            await tx.execute("UPDATE pool_vms SET instance_id = $1 WHERE vm_id = $2",
                             instance_id, vm_id)
            await tx.record_change(Feed.ASSIGNMENTS, POOL_KEY)

    async def set_state(self, epoch: int, vm_id: str, state: PoolVmState, now: float) -> None:
        async with self._db.write() as tx:
            await check_epoch(tx, epoch)
            await tx.execute("UPDATE pool_vms SET state = $1, state_since = $2 WHERE vm_id = $3",
                             state.value, now, vm_id)
            # The scheduler hears of it (a draining VM gets no new dynos; its dynos get twins).
            await tx.record_change(Feed.ASSIGNMENTS, vm_id)

    async def forget(self, epoch: int, vm_id: str) -> Removal:
        """The VM is gone (terminated, or never started): its rows and token go."""
        async with self._db.write() as tx:
            await check_epoch(tx, epoch)
            exists = await tx.fetchrow("SELECT 1 FROM vms WHERE id = $1", vm_id)
            moved = await delete_vm(tx, vm_id) if exists is not None else 0
            revoked = await _revoke_vm_tokens(tx, vm_id)
            await tx.execute("DELETE FROM pool_vms WHERE vm_id = $1", vm_id)
            await tx.record_change(Feed.ASSIGNMENTS, POOL_KEY)
            return Removal(vm_id, moved, revoked, False)

    async def purge_lost(self, epoch: int, lost_before: str) -> list[str]:
        """Remove the rows of VMs lost before `lost_before` (ISO 8601, as `lost_at`) that
        are not pool VMs; their dynos were placed elsewhere when they were lost."""
        async with self._db.write() as tx:
            await check_epoch(tx, epoch)
            rows = await tx.fetch(
                "SELECT id FROM vms WHERE state = 'lost' AND lost_at < $1 AND id NOT IN "
                "(SELECT vm_id FROM pool_vms) ORDER BY id", lost_before)
            removed = [r["id"] for r in rows]
            for vm_id in removed:
                await delete_vm(tx, vm_id)
            return removed

    async def record_error(self, failure: ProviderFailure | None) -> None:
        """Keep the last provider error (None: the last call worked)."""
        async with self._db.write_unordered() as tx:
            if failure is None:
                await tx.execute("UPDATE pool_settings SET error_code = NULL, "
                                 "error_message = NULL, error_operation = NULL, "
                                 "error_at = NULL WHERE id = 1")
                return
            await tx.execute(
                "UPDATE pool_settings SET error_code = $1, error_message = $2, "
                "error_operation = $3, error_at = $4 WHERE id = 1", failure.code,
                failure.message[:1000], failure.operation, failure.at)

    async def record_unknown(self, unknown: list[dict[str, Any]], now: float) -> None:
        async with self._db.write_unordered() as tx:
            await tx.execute("UPDATE pool_settings SET unknown_instances = $1, "
                             "reconciled_at = $2 WHERE id = 1", json.dumps(unknown), now)
