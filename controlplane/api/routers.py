"""What the routers share: the session affinity signing keys (ids and ages, never secrets)."""

from __future__ import annotations

from aiohttp import web

from controlplane.api import render
from controlplane.api.auth import allow
from controlplane.api.context import context
from controlplane.store.models import Role


@allow(Role.USER)
async def list_keys(request: web.Request) -> web.Response:
    keys = await context(request).store.affinity_keys.list()
    return web.json_response([render.affinity_key(k, signs=i == 0) for i, k in enumerate(keys)])


@allow(Role.USER)
async def rotate_keys(request: web.Request) -> web.Response:
    """A new signing key for every router (through the route feed); the previous one still
    verifies, older ones are retired."""
    key, retired = await context(request).store.affinity_keys.rotate()
    keys = await context(request).store.affinity_keys.list()
    return web.json_response({
        "signing": render.affinity_key(key, signs=True),
        "keys": [render.affinity_key(k, signs=k.id == key.id) for k in keys],
        "retired": [k.id for k in retired]}, status=201)
