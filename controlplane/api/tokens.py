"""Tokens (create, list, revoke), the caller's own identity, and the health check."""

from __future__ import annotations

import re

from aiohttp import web

from controlplane.api import bodies, render
from controlplane.api.auth import TOKEN_KEY, allow, public
from controlplane.api.context import context
from controlplane.api.errors import invalid
from controlplane.store.models import Role

VM_ID = re.compile(r"^[-\w.]{1,128}$", re.ASCII)


@public
async def healthz(request: web.Request) -> web.Response:
    """Liveness for supervisors and load balancers: says nothing but "up"."""
    return web.json_response({"status": "ok"})


@allow(Role.USER, Role.ROUTER, Role.DYNOMGR)
async def whoami(request: web.Request) -> web.Response:
    return web.json_response(render.token(request[TOKEN_KEY]))


@allow(Role.USER)
async def list_tokens(request: web.Request) -> web.Response:
    tokens = await context(request).store.tokens.list()
    return web.json_response([render.token(t) for t in tokens])


@allow(Role.USER)
async def create_token(request: web.Request) -> web.Response:
    body = await bodies.json_object(request, allowed={"role", "vm_id", "description"},
                                    required={"role"})
    roles = {r.value: r for r in Role}
    if body["role"] not in roles:
        raise invalid(f"unknown role {body['role']!r}; roles: {', '.join(roles)}")
    role = roles[body["role"]]
    vm_id = body.get("vm_id")
    if role is Role.DYNOMGR:
        if not isinstance(vm_id, str) or not VM_ID.match(vm_id):
            raise invalid("a dynomgr token is bound to one VM: give 'vm_id' (letters, digits, "
                          "'-', '_', '.'; up to 128)")
    elif vm_id is not None:
        raise invalid("only dynomgr tokens are bound to a VM; leave 'vm_id' out")
    description = bodies.string(body, "description", max_length=200) \
        if "description" in body else ""
    issued = await context(request).store.tokens.create(role, vm_id=vm_id,
                                                        description=description)
    return web.json_response({**render.token(issued.token), "token": issued.secret}, status=201)


@allow(Role.USER)
async def revoke_token(request: web.Request) -> web.Response:
    token = await context(request).store.tokens.revoke(request.match_info["token"])
    return web.json_response(render.token(token))
