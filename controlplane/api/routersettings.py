"""An app's router settings (`config:router`): GET and PATCH /apps/{app}/router-settings.

PATCH takes any of the settings (controlplane/routersettings.py checks each value; null resets
one to the router's or dyno manager's default) and answers with all of them.
"""

from __future__ import annotations

from aiohttp import web

from controlplane.api import bodies
from controlplane.api.auth import allow
from controlplane.api.context import context
from controlplane.api.errors import invalid
from controlplane.api.render import app_ref
from controlplane.routersettings import NAMES, InvalidSetting, RouterSettings, validated
from controlplane.store.models import App, Role


def _render(app: App, settings: RouterSettings) -> dict:
    return {"app": app_ref(app), **settings.to_json()}


@allow(Role.USER)
async def get_router_settings(request: web.Request) -> web.Response:
    app, settings = await context(request).store.router_settings.get(request.match_info["app"])
    return web.json_response(_render(app, settings))


@allow(Role.USER)
async def update_router_settings(request: web.Request) -> web.Response:
    body = await bodies.json_object(request, allowed=set(NAMES))
    try:
        changes = {name: validated(name, value) for name, value in body.items()}
    except InvalidSetting as exc:
        raise invalid(str(exc)) from None
    app, settings = await context(request).store.router_settings.update(
        request.match_info["app"], changes)
    return web.json_response(_render(app, settings))
