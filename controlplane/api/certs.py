"""An app's TLS certificates: list, add (checked; the key sealed), remove; and automatic
certificates (ACME): turn them on or off, and where each domain's stands (`/acm`, as Heroku's
API names it).

The private key goes in with `POST` and never comes out: responses carry the leaf's facts
(names, expiry, issuer, fingerprint) only. Routers get keys through the route feed alone.
"""

from __future__ import annotations

from aiohttp import web

from controlplane.api import bodies, render
from controlplane.api.auth import Role, allow
from controlplane.api.context import ApiContext, context
from controlplane.api.errors import ApiError, invalid
from controlplane.certs.service import NoCertificateKey


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


@allow(Role.USER)
async def acm_status(request: web.Request) -> web.Response:
    app, enabled, domains = await context(request).store.acme.status(request.match_info["app"])
    return web.json_response(render.acm(app, enabled, domains))


@allow(Role.USER)
async def enable_acm(request: web.Request) -> web.Response:
    """Turn automatic certificates on (again: failed domains are tried at once)."""
    certs = context(request).certs
    if certs is None or certs.key is None:
        # Refused now rather than shown later as every domain failing for the same reason.
        raise NoCertificateKey(
            "this control plane has no certificate key to seal the ACME account's and the "
            "certificates' keys with: start it with --certificate-key-file FILE (docs/api.md, "
            "\"Certificates\")")
    return await _set_acm(request, True)


@allow(Role.USER)
async def disable_acm(request: web.Request) -> web.Response:
    return await _set_acm(request, False)


async def _set_acm(request: web.Request, enabled: bool) -> web.Response:
    app, enabled, domains = await context(request).store.acme.set_enabled(
        request.match_info["app"], enabled)
    return web.json_response(render.acm(app, enabled, domains))
