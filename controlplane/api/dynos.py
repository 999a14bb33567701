"""Dynos: list them (`ps`), restart and stop them, after Heroku's Platform API.

- `DELETE /apps/{app}/dynos` restarts every dyno, `DELETE /apps/{app}/dynos/{dyno}` one dyno
  (`web.2`) or a process type (`web`): Heroku's verbs for a restart.
- `POST /apps/{app}/dynos/{dyno}/actions/stop` stops it; the scheduler starts a replacement
  because the formation still wants it, as on Heroku.

Both answer 202 with the dynos concerned: web dynos leave the routes first, and stop or
restart once routers have that (docs/feeds.md, "Taking dynos out").
"""

from __future__ import annotations

from aiohttp import web

from controlplane.api import render
from controlplane.api.auth import actor, allow
from controlplane.api.context import context
from controlplane.store.models import Role


@allow(Role.USER)
async def list_dynos(request: web.Request) -> web.Response:
    listing = await context(request).store.dynos.list(request.match_info["app"])
    return web.json_response([render.dyno(listing.app, d) for d in listing.dynos])


@allow(Role.USER)
async def get_dyno(request: web.Request) -> web.Response:
    app, dyno = await context(request).store.dynos.get(request.match_info["app"],
                                                       request.match_info["dyno"])
    return web.json_response(render.dyno(app, dyno))


async def _restart(request: web.Request, target: str | None) -> web.Response:
    ctx = context(request)
    listing = await ctx.store.dynos.restart(request.match_info["app"], target)
    what = "all dynos" if target is None else target
    ctx.applog.write(listing.app.name, f"Restart {what} by {actor(request)}")
    return web.json_response([render.dyno(listing.app, d) for d in listing.dynos], status=202)


@allow(Role.USER)
async def restart_all(request: web.Request) -> web.Response:
    return await _restart(request, None)


@allow(Role.USER)
async def restart_dyno(request: web.Request) -> web.Response:
    return await _restart(request, request.match_info["dyno"])


@allow(Role.USER)
async def stop_dyno(request: web.Request) -> web.Response:
    ctx = context(request)
    target = request.match_info["dyno"]
    listing = await ctx.store.dynos.stop(request.match_info["app"], target)
    ctx.applog.write(listing.app.name, f"Stop {target} by {actor(request)}")
    return web.json_response([render.dyno(listing.app, d) for d in listing.dynos], status=202)
