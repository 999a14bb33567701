"""VMs and what their dyno managers report: registration, heartbeats, observed dyno states.

Reports are idempotent and ordered by the agent's own clock: a report about a dyno is applied
only if it is newer (`since`) than what is stored, so a repeated or late report changes
nothing. A report about a dyno that is not (or no longer) assigned to the reporting VM, or about
an older release of it, is accepted and ignored (docs/feeds.md).

A report changes the feeds only where they show it, in the same transaction: an `up` serving
web dyno enters its app's route entry (routers hear of it within milliseconds), and a preboot
dyno's state wakes the scheduler, which switches routes once all are up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from controlplane.store import errors
from controlplane.store.database import Database, Transaction, placeholders
from controlplane.store.dynos import WITH_APP_NAME, with_app_name
from controlplane.store.models import (ObservedReport, ObservedState, Vm, VmLoad,
                                       VmRegistration, VmState, now_iso)
from controlplane.store.oneoffs import finish
from controlplane.store.revision import Feed


@dataclass(frozen=True)
class VmUsage:
    vm: Vm
    used_mb: int
    dynos: int


@dataclass(frozen=True)
class ReportOutcome:
    applied: int
    ignored: int


def _not_registered(vm_id: str) -> errors.NotFound:
    return errors.NotFound(f"VM {vm_id!r} is not registered: PUT /vms/{vm_id} first")


async def _require_vm(tx: Transaction, vm_id: str) -> Vm:
    row = await tx.fetchrow("SELECT * FROM vms WHERE id = $1", vm_id)
    if row is None:
        raise _not_registered(vm_id)
    return Vm.from_row(row)


async def vm_loads(tx: Transaction) -> dict[str, VmLoad]:
    """VM id -> what is placed on it, for every VM with a dyno placed."""
    totals: dict[str, list[int]] = {}  # vm id -> [used_mb, dynos, web dynos]
    apps: dict[str, dict[str, int]] = {}
    for row in await tx.fetch(
            "SELECT vm_id, app_id, type, COUNT(*) AS n, SUM(memory_mb) AS mb FROM dynos "
            "WHERE vm_id IS NOT NULL GROUP BY vm_id, app_id, type"):
        n = int(row["n"])
        total = totals.setdefault(row["vm_id"], [0, 0, 0])
        total[0] += int(row["mb"])
        total[1] += n
        if row["type"] == "web":
            total[2] += n
        per_app = apps.setdefault(row["vm_id"], {})
        per_app[row["app_id"]] = per_app.get(row["app_id"], 0) + n
    return {vm_id: VmLoad(used, dynos, web, apps[vm_id])
            for vm_id, (used, dynos, web) in totals.items()}


async def all_vms(tx: Transaction) -> list[Vm]:
    return [Vm.from_row(r) for r in await tx.fetch("SELECT * FROM vms ORDER BY id")]


async def _usage(tx: Transaction) -> list[VmUsage]:
    loads = await vm_loads(tx)
    usage = []
    for vm in await all_vms(tx):
        load = loads.get(vm.id, VmLoad())
        usage.append(VmUsage(vm, load.used_mb, load.dynos))
    return usage


async def _sign_of_life(tx: Transaction, vm: Vm, now: float) -> None:
    """The agent is alive: refresh its heartbeat; a lost VM is back (and can take dynos)."""
    await tx.execute("UPDATE vms SET heartbeat_at = $1, state = 'ready', lost_at = NULL "
                     "WHERE id = $2", now, vm.id)
    if vm.state is VmState.LOST:
        await tx.record_change(Feed.ASSIGNMENTS, vm.id)  # wakes the scheduler everywhere


async def apply_reports(tx: Transaction, vm_id: str,
                        reports: Sequence[ObservedReport]) -> ReportOutcome:
    if not reports:
        return ReportOutcome(0, 0)
    ids = sorted({r.id for r in reports})
    rows = await tx.fetch(f"{WITH_APP_NAME} WHERE d.id IN ({placeholders(len(ids))})", *ids)
    known = {dyno.id: (dyno, app_name) for dyno, app_name in with_app_name(rows)}
    applied = ignored = 0
    for report in reports:
        found = known.get(report.id)
        if found is None:
            ignored += 1
            continue
        dyno, app_name = found
        if (dyno.vm_id != vm_id or (report.release is not None and report.release != dyno.release)
                or (dyno.state_since is not None and report.since <= dyno.state_since)):
            ignored += 1
            continue
        if dyno.one_off is not None and report.state is ObservedState.DOWN:
            # A one-off dyno is down once: it ran (a release phase settles its release here).
            await finish(tx, dyno, app_name, exit_status=report.exit_status,
                         output=report.output, reason=report.reason)
            del known[dyno.id]
            applied += 1
            continue
        after = replace(dyno, state=report.state, address=report.address,
                        state_since=report.since, restarts=report.restarts,
                        reason=report.reason, error_code=report.error_code,
                        unhealthy=report.unhealthy)
        await tx.execute(
            "UPDATE dynos SET state = $1, address = $2, state_since = $3, restarts = $4, "
            "reason = $5, error_code = $6, unhealthy = $7 WHERE id = $8", report.state.value,
            report.address, report.since, report.restarts, report.reason, report.error_code,
            report.unhealthy, dyno.id)
        known[dyno.id] = (after, app_name)
        applied += 1
        if dyno.replaces is not None and dyno.state != after.state:
            await tx.record_change(Feed.FORMATION, app_name)  # a drain may switch to it now
        if not dyno.is_web:
            continue
        if dyno.serving and dyno.take_out is None:
            if ((dyno.state, dyno.address, dyno.unhealthy)
                    != (after.state, after.address, after.unhealthy)):
                await tx.record_change(Feed.ROUTES, app_name)
        elif not dyno.serving and dyno.state != after.state:
            await tx.record_change(Feed.FORMATION, app_name)  # a preboot may switch now
    return ReportOutcome(applied, ignored)


class VmStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def register(self, vm_id: str, registration: VmRegistration, *,
                       now: float) -> VmUsage:
        """Register or re-register a VM (at its agent's start and after every reconnect);
        return it as registered, with what is placed on it."""
        low, high = registration.ports
        stack = json.dumps(registration.stack, sort_keys=True)
        async with self._db.write() as tx:
            row = await tx.fetchrow("SELECT * FROM vms WHERE id = $1", vm_id)
            if row is None:
                await tx.execute(
                    "INSERT INTO vms (id, address, capacity_mb, port_low, port_high, version, "
                    "state, registered_at, heartbeat_at, stack) VALUES ($1, $2, $3, $4, $5, $6, "
                    "'ready', $7, $8, $9)", vm_id, registration.address, registration.capacity_mb,
                    low, high, registration.version, now_iso(), now, stack)
                await tx.record_change(Feed.ASSIGNMENTS, vm_id)
            else:
                old = Vm.from_row(row)
                await tx.execute(
                    "UPDATE vms SET address = $1, capacity_mb = $2, port_low = $3, "
                    "port_high = $4, version = $5, state = 'ready', lost_at = NULL, "
                    "heartbeat_at = $6, stack = $7 WHERE id = $8", registration.address,
                    registration.capacity_mb, low, high, registration.version, now, stack, vm_id)
                if (old.state is VmState.LOST or old.address != registration.address
                        or old.capacity_mb != registration.capacity_mb
                        or old.ports != registration.ports):
                    # Room or reachability changed: the scheduler looks again.
                    await tx.record_change(Feed.ASSIGNMENTS, vm_id)
            return next(u for u in await _usage(tx) if u.vm.id == vm_id)

    async def heartbeat(self, vm_id: str, observed: Sequence[ObservedReport], *,
                        now: float) -> ReportOutcome:
        async with self._db.write() as tx:
            await _sign_of_life(tx, await _require_vm(tx, vm_id), now)
            return await apply_reports(tx, vm_id, observed)

    async def report_states(self, vm_id: str, changes: Sequence[ObservedReport], *,
                            now: float) -> ReportOutcome:
        async with self._db.write() as tx:
            await _sign_of_life(tx, await _require_vm(tx, vm_id), now)
            return await apply_reports(tx, vm_id, changes)

    async def runs_slug(self, vm_id: str, slug_id: str) -> bool:
        """Whether a dyno assigned to `vm_id` runs a release of this slug."""
        async with self._db.read() as tx:
            return await tx.fetchrow(
                "SELECT 1 FROM dynos d JOIN releases r ON r.app_id = d.app_id "
                "AND r.version = d.release_version WHERE d.vm_id = $1 AND r.slug_id = $2 "
                "LIMIT 1", vm_id, slug_id) is not None

    async def get(self, vm_id: str) -> VmUsage:
        for usage in await self.list():
            if usage.vm.id == vm_id:
                return usage
        raise _not_registered(vm_id)

    async def list(self) -> list[VmUsage]:
        async with self._db.read() as tx:
            return await _usage(tx)
