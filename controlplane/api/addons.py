"""Add-ons: list, create, show and destroy an app's add-ons (a PostgreSQL database).

Creating or destroying one changes the app's config vars, so it makes a release as
`config:set` does: its version comes back in the `Dynomesh-Release` header and Heroku's
pair of lines goes into the app's log.
"""

from __future__ import annotations

from aiohttp import web

from controlplane.api import bodies, render
from controlplane.api.auth import actor, allow
from controlplane.api.context import context
from controlplane.api.releases import RELEASE_HEADER, log_release
from controlplane.addons.service import Changed
from controlplane.store.models import Addon, Role


async def _rendered(request: web.Request, addons: list[Addon]) -> list[dict]:
    ctx = context(request)
    if not addons:
        return []
    config = await ctx.store.releases.config(addons[0].app_id)
    return [render.addon(a, config.get(a.config_var), ctx.addons.location(a)) for a in addons]


def _answer(request: web.Request, changed: Changed, rendered: dict, status: int) -> web.Response:
    if changed.release is not None:
        log_release(request, changed.addon.app_name, changed.release)
    headers = {RELEASE_HEADER: str(changed.release.version)} if changed.release else {}
    return web.json_response(rendered, status=status, headers=headers)


@allow(Role.USER)
async def list_addons(request: web.Request) -> web.Response:
    ctx = context(request)
    addons = await ctx.store.addons.list(request.match_info["app"])
    return web.json_response(await _rendered(request, addons))


@allow(Role.USER)
async def get_addon(request: web.Request) -> web.Response:
    ctx = context(request)
    addon = await ctx.store.addons.get(request.match_info["app"], request.match_info["addon"])
    return web.json_response((await _rendered(request, [addon]))[0])


@allow(Role.USER)
async def create_addon(request: web.Request) -> web.Response:
    """{"kind": "postgresql"}: 201 with the add-on (200 when it finished an interrupted one)."""
    ctx = context(request)
    body = await bodies.json_object(request, allowed={"kind"}, required={"kind"})
    kind = bodies.string(body, "kind", max_length=64)
    changed = await ctx.addons.create(request.match_info["app"], kind)
    ctx.applog.write(changed.addon.app_name,
                     f"Add-on {changed.addon.name} ({changed.addon.kind}) "
                     f"{'finished' if changed.resumed else 'created'} by {actor(request)}")
    rendered = (await _rendered(request, [changed.addon]))[0]
    return _answer(request, changed, rendered, 200 if changed.resumed else 201)


@allow(Role.USER)
async def destroy_addon(request: web.Request) -> web.Response:
    ctx = context(request)
    changed = await ctx.addons.destroy(request.match_info["app"], request.match_info["addon"])
    ctx.applog.write(changed.addon.app_name,
                     f"Add-on {changed.addon.name} ({changed.addon.kind}) destroyed by "
                     f"{actor(request)}")
    rendered = render.addon(changed.addon, None, ctx.addons.location(changed.addon))
    return _answer(request, changed, rendered, 200)
