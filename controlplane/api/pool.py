"""The VM pool: `GET /pool`, `PATCH /pool` (`pool:scale`) and `DELETE /vms/{vm}` (`vms:remove`).

Any control node answers from the store: the pool's rows, the VMs' reports, the last provider
error and the instances nobody knows were written by the scheduling node's pool loop.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from controlplane.api import bodies
from controlplane.api.auth import allow
from controlplane.api.context import context
from controlplane.api.errors import ApiError, invalid
from controlplane.api.render import unix_iso
from controlplane.pool.manager import limits_of
from controlplane.store.models import Role, VmLoad
from controlplane.store.pool import PoolSnapshot

MAX_POOL_VMS = 1000


def _vm_rows(snap: PoolSnapshot, now: float) -> list[dict[str, Any]]:
    pool = {row.vm_id: row for row in snap.pool}
    rows = []
    for vm_id in sorted(set(pool) | set(snap.vms)):
        row, vm = pool.get(vm_id), snap.vms.get(vm_id)
        load = snap.loads.get(vm_id, VmLoad())
        state = row.state.value if row else "ready"
        if vm is not None and vm.state.value == "lost":
            state = "lost"
        rows.append({
            "id": vm_id, "provider": row.provider if row else "local",
            "instance_id": row.instance_id if row else None, "state": state,
            "address": vm.address if vm else None, "dynos": load.dynos,
            "used_mb": load.used_mb,
            "capacity_mb": vm.capacity_mb if vm else (row.capacity_mb if row else 0),
            "last_report": unix_iso(vm.heartbeat_at) if vm else None,
            "last_report_age": round(max(0.0, now - vm.heartbeat_at), 1) if vm else None,
            "launched_at": unix_iso(row.launched_at) if row else None})
    return rows


def render_pool(snap: PoolSnapshot, provider: str, config, now: float) -> dict[str, Any]:
    limits = limits_of(config, snap)
    error = snap.settings.error
    return {
        "provider": provider, "min": limits.min_vms, "max": limits.max_vms,
        "limits_from": ("pool:scale" if snap.settings.min_vms is not None
                        or snap.settings.max_vms is not None else "flags"),
        "vm_capacity_mb": config.capacity_mb,
        "waiting_dynos": len(snap.waiting_mb), "waiting_mb": sum(snap.waiting_mb),
        "vms": _vm_rows(snap, now),
        "unknown_instances": snap.settings.unknown,
        "last_error": None if error is None else {
            "code": error.code, "message": error.message, "operation": error.operation,
            "at": unix_iso(error.at)},
        "reconciled_at": (unix_iso(snap.settings.reconciled_at)
                          if snap.settings.reconciled_at else None)}


@allow(Role.USER)
async def get_pool(request: web.Request) -> web.Response:
    ctx = context(request)
    snap = await ctx.store.pool.snapshot()
    return web.json_response(render_pool(snap, ctx.config.pool.provider, ctx.config.pool,
                                         time.time()))


def _limit(body: dict, field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_POOL_VMS:
        raise invalid(f"'{field}' must be a whole number of VMs from 0 to {MAX_POOL_VMS}")
    return value


@allow(Role.USER)
async def scale_pool(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await bodies.json_object(request, allowed={"min", "max"})
    low, high = _limit(body, "min"), _limit(body, "max")
    if low is None and high is None:
        raise invalid("give 'min', 'max' or both, e.g. {\"min\": 1, \"max\": 5}")
    if ctx.config.pool.provider == "local":
        raise ApiError(409, "conflict", "the local pool launches no VMs, so min and max do "
                       "not apply: its VMs are the dyno managers that register (start "
                       "`dynomesh control` with --pool-provider ec2 for a pool that grows)")
    await ctx.store.pool.set_limits(low, high)
    snap = await ctx.store.pool.snapshot()
    return web.json_response(render_pool(snap, ctx.config.pool.provider, ctx.config.pool,
                                         time.time()))


@allow(Role.USER)
async def remove_vm(request: web.Request) -> web.Response:
    force = request.query.get("force", "false")
    if force not in ("true", "false"):
        raise invalid("'force' must be true or false")
    removal = await context(request).store.pool.remove_vm(request.match_info["vm"],
                                                          force=force == "true")
    return web.json_response({"id": removal.vm_id, "dynos_moved": removal.dynos,
                              "tokens_revoked": removal.tokens,
                              "terminating": removal.terminating})
