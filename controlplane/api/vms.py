"""VMs: operators list them; a VM's dyno manager registers it and reports (docs/feeds.md).

Report bodies are checked whole before anything applies (422 naming the first bad entry, like
formation batches). Fields the control plane does not know are ignored, so a newer dyno manager
can add some.
"""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp import web

from dynomesh.stack import Interpreter

from controlplane.api import bodies, render
from controlplane.api.auth import TOKEN_KEY, allow
from controlplane.api.context import context
from controlplane.api.errors import ApiError, invalid
from controlplane.store.models import ObservedReport, ObservedState, Role, VmRegistration

MAX_DYNOS_PER_REPORT = 10_000
MAX_OUTPUT = 8000  # the tail of a one-off dyno's output that its end carries
_STATES = ", ".join(s.value for s in ObservedState)


def _own_vm(request: web.Request) -> str:
    vm_id = request.match_info["vm"]
    token = request[TOKEN_KEY]
    if token.vm_id != vm_id:
        raise ApiError(403, "forbidden", f"this dynomgr token is bound to VM {token.vm_id!r}, "
                                         f"not {vm_id!r}")
    return vm_id


def _optional_text(item: dict, field: str, where: str, max_length: int) -> str | None:
    value = item.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise invalid(f"{where}.{field} must be a string of at most {max_length} characters "
                      "or null")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def observed(item: Any, where: str) -> ObservedReport:
    """One OBSERVED entry."""
    if not isinstance(item, dict):
        raise invalid(f"{where} must be an object like {{\"id\": \"d-…\", \"state\": \"up\", "
                      "\"since\": 1795000000.1}")
    dyno_id = item.get("id")
    if not isinstance(dyno_id, str) or not 0 < len(dyno_id) <= 128:
        raise invalid(f"{where}.id must be the dyno's id from its assignment")
    try:
        state = ObservedState(item.get("state"))
    except ValueError:
        raise invalid(f"{where}.state must be one of {_STATES}, got "
                      f"{item.get('state')!r}") from None
    since = item.get("since")
    if not _number(since) or not math.isfinite(since) or since < 0:
        raise invalid(f"{where}.since must be the Unix time of the change (seconds)")
    restarts = item.get("restarts", 0)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
        raise invalid(f"{where}.restarts must be a whole number >= 0")
    release = item.get("release")
    if release is not None and (isinstance(release, bool) or not isinstance(release, int)
                                or release < 1):
        raise invalid(f"{where}.release must be a release version (a whole number >= 1)")
    exit_status = item.get("exit_status")
    if exit_status is not None and (isinstance(exit_status, bool)
                                    or not isinstance(exit_status, int)
                                    or not 0 <= exit_status <= 255):
        raise invalid(f"{where}.exit_status must be a one-off dyno's exit status (0 to 255) "
                      "or null")
    address = _optional_text(item, "address", where, 300)
    if address is not None and ":" not in address:
        raise invalid(f"{where}.address must be host:port")
    return ObservedReport(
        id=dyno_id, state=state, since=float(since), address=address, restarts=restarts,
        reason=_optional_text(item, "reason", where, 500),
        error_code=_optional_text(item, "error_code", where, 16), release=release,
        exit_status=exit_status, output=_optional_text(item, "output", where, MAX_OUTPUT),
        unhealthy=_optional_text(item, "unhealthy", where, 500) if state is ObservedState.UP
        else None)


def _observed_list(body: dict, field: str) -> list[ObservedReport]:
    items = body.get(field)
    if not isinstance(items, list):
        raise invalid(f"'{field}' must be a list of observed dynos")
    if len(items) > MAX_DYNOS_PER_REPORT:
        raise invalid(f"'{field}' lists more than {MAX_DYNOS_PER_REPORT} dynos")
    return [observed(item, f"{field}[{i}]") for i, item in enumerate(items)]


def registration(body: dict) -> VmRegistration:
    address = body.get("address")
    if not isinstance(address, str) or not 0 < len(address) <= 255 or " " in address:
        raise invalid("'address' must be where routers reach this VM's dynos, e.g. '10.0.0.5'")
    capacity = body.get("capacity_mb")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or not 0 < capacity <= 2**31:
        raise invalid("'capacity_mb' must be the memory dynos may use, in MB (a whole number > 0)")
    ports = body.get("ports", [20000, 29999])
    if (not isinstance(ports, list) or len(ports) != 2
            or not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535
                       for p in ports) or ports[0] > ports[1]):
        raise invalid("'ports' must be the dyno port range [low, high], e.g. [20000, 29999]")
    version = body.get("version", "")
    if not isinstance(version, str) or len(version) > 64:
        raise invalid("'version' must be the dyno manager's version (a short string)")
    return VmRegistration(address, capacity, (ports[0], ports[1]), version,
                          _stack(body.get("stack", {})))


def _stack(value: Any) -> dict[str, Any]:
    """{"interpreters": [{"version": "3.11.2", "path": "/usr/bin/python3.11"}, …]}"""
    if not isinstance(value, dict):  # other keys: a newer dyno manager's, ignored
        raise invalid("'stack' must be {\"interpreters\": [...]}")
    items = value.get("interpreters", [])
    if not isinstance(items, list) or len(items) > 32:
        raise invalid("'stack.interpreters' must be a list of at most 32 interpreters")
    try:
        interpreters = [Interpreter.from_json(item) for item in items]
    except ValueError as exc:
        raise invalid(f"'stack.interpreters': {exc}") from exc
    return {"interpreters": [i.to_json() for i in interpreters]}


@allow(Role.USER)
async def status(request: web.Request) -> web.Response:
    """This control node, which node schedules, and how far this node's feeds are."""
    ctx = context(request)
    leader = await ctx.store.nodes.leader()
    return web.json_response({
        "node": ctx.node_id, "leading": ctx.leading.is_set(),
        "scheduler": {"node": leader.node,
                      "since": render.unix_iso(leader.since) if leader.since else None},
        "revision": ctx.routes.revision, "route_followers": ctx.followers.count})


@allow(Role.USER)
async def list_vms(request: web.Request) -> web.Response:
    now = time.time()
    return web.json_response([render.vm(u, now) for u in
                              await context(request).store.vms.list()])


@allow(Role.USER)
async def get_vm(request: web.Request) -> web.Response:
    usage = await context(request).store.vms.get(request.match_info["vm"])
    return web.json_response(render.vm(usage, time.time()))


@allow(Role.DYNOMGR)
async def register_vm(request: web.Request) -> web.Response:
    vm_id = _own_vm(request)
    body = await bodies.json_object(request, allowed=None)
    now = time.time()
    usage = await context(request).store.vms.register(vm_id, registration(body), now=now)
    return web.json_response(render.vm(usage, now))


@allow(Role.DYNOMGR)
async def heartbeat(request: web.Request) -> web.Response:
    vm_id = _own_vm(request)
    body = await bodies.json_object(request, allowed=None, required={"dynos"},
                                    limit=bodies.MAX_REPORT_BYTES)
    outcome = await context(request).store.vms.heartbeat(
        vm_id, _observed_list(body, "dynos"), now=time.time())
    return web.json_response({"applied": outcome.applied, "ignored": outcome.ignored})


@allow(Role.DYNOMGR)
async def report_states(request: web.Request) -> web.Response:
    vm_id = _own_vm(request)
    body = await bodies.json_object(request, allowed=None, required={"changes"},
                                    limit=bodies.MAX_REPORT_BYTES)
    outcome = await context(request).store.vms.report_states(
        vm_id, _observed_list(body, "changes"), now=time.time())
    return web.json_response({"applied": outcome.applied, "ignored": outcome.ignored})
