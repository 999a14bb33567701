"""An app's TLS certificates: list, add (checked; the key sealed), remove.

The private key goes in with `POST` and never comes out: responses carry the leaf's facts
(names, expiry, issuer, fingerprint) only. Routers get keys through the route feed alone.
"""

from __future__ import annotations

from aiohttp import web

from controlplane.api import bodies, render
from controlplane.api.auth import Role, allow
from controlplane.api.context import ApiContext, context
from controlplane.api.errors import ApiError, invalid


def _service(ctx: ApiContext):
    if ctx.certs is None:
        raise ApiError(503, "certificates_unavailable", "this control plane serves no "
                       "certificates (started without its certificate service)")
    return ctx.certs


@allow(Role.USER)
async def list_certs(request: web.Request) -> web.Response:
    ctx = context(request)
    app, certs = await _service(ctx).list(request.match_info["app"])
    return web.json_response([render.certificate(app, c) for c in certs])


@allow(Role.USER)
async def add_cert(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await bodies.json_object(request, allowed={"chain", "key"}, required={"chain", "key"})
    for field in ("chain", "key"):
        if not isinstance(body[field], str):
            raise invalid(f"{field} must be PEM text (a string)")
    service = _service(ctx)
    app = await ctx.store.apps.get(request.match_info["app"])
    cert = await service.add(app.id, body["chain"], body["key"])
    return web.json_response(render.certificate(app, cert), status=201)


@allow(Role.USER)
async def remove_cert(request: web.Request) -> web.Response:
    ctx = context(request)
    service = _service(ctx)
    app = await ctx.store.apps.get(request.match_info["app"])
    cert = await service.remove(app.id, request.match_info["cert"])
    return web.json_response(render.certificate(app, cert))
