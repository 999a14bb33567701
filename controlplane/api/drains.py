"""Log drains of an app (add, list, remove) and the control node's `/metrics`."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from controlplane.api import bodies, render
from controlplane.api.auth import allow
from controlplane.api.context import context
from controlplane.api.errors import invalid
from controlplane.drains.metrics import DrainCollector
from controlplane.drains.urls import BadDrainUrl, parse
from controlplane.store.models import Role


@allow(Role.USER)
async def list_drains(request: web.Request) -> web.Response:
    ctx = context(request)
    _, drains = await ctx.store.drains.list(request.match_info["app"])
    return web.json_response([render.drain(d, ctx.drains.stats(d)) for d in drains])


@allow(Role.USER)
async def add_drain(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await bodies.json_object(request, allowed={"url"}, required={"url"})
    try:
        target = parse(body["url"])
    except BadDrainUrl as exc:
        raise invalid(str(exc)) from None
    drain = await ctx.store.drains.add(request.match_info["app"], target.url)
    ctx.drains.wake()
    return web.json_response(render.drain(drain, drain.stats), status=201)


@allow(Role.USER)
async def remove_drain(request: web.Request) -> web.Response:
    """`{drain}` is the drain's id, its token or its URL (percent-encoded)."""
    ctx = context(request)
    drain = await ctx.store.drains.remove(request.match_info["app"],
                                          request.match_info["drain"].strip())
    ctx.drains.wake()
    return web.json_response(render.drain(drain, ctx.drains.stats(drain)))


@allow(Role.USER)
async def metrics(request: web.Request) -> web.Response:
    """This node's drain deliveries in Prometheus' text format (a user token: the series
    name apps)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DrainCollector(context(request).drains.deliveries))
    return web.Response(body=generate_latest(registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})
