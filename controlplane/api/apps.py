"""Apps (create, info, update, delete), their custom domains and their features."""

from __future__ import annotations

import secrets

from aiohttp import web

from controlplane import names
from controlplane.api import bodies, render
from controlplane.api.auth import allow
from controlplane.api.context import context
from controlplane.api.errors import invalid
from controlplane.store import errors
from controlplane.store.models import Role

_ADJECTIVES = ("amber", "brisk", "calm", "dusty", "eager", "fuzzy", "gentle", "hidden", "icy",
               "jolly", "lively", "misty", "noble", "quiet", "rapid", "silent", "sunny", "young")
_NOUNS = ("brook", "cloud", "dawn", "field", "forest", "harbor", "lake", "meadow", "river",
          "shore", "sky", "stone", "wave", "wind")


def _generated_name() -> str:
    # Like Heroku's generated names (`sleepy-river-1234`), for `apps:create` without a name.
    return (f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-"
            f"{secrets.randbelow(9000) + 1000}")


@allow(Role.USER)
async def list_apps(request: web.Request) -> web.Response:
    ctx = context(request)
    return web.json_response([render.app(ctx.config, a) for a in await ctx.store.apps.list()])


@allow(Role.USER)
async def create_app(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await bodies.json_object(request, allowed={"name"}, empty_ok=True)
    if body.get("name") is not None:
        app = await ctx.store.apps.create(bodies.named(names.app_name, body["name"]))
    else:
        for _ in range(5):  # a generated name can collide; try a few
            try:
                app = await ctx.store.apps.create(_generated_name())
                break
            except errors.Conflict:
                continue
        else:
            raise errors.Conflict("could not find a free generated name: give the app a name")
    return web.json_response(render.app(ctx.config, app), status=201)


@allow(Role.USER)
async def get_app(request: web.Request) -> web.Response:
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    return web.json_response(render.app(ctx.config, app))


@allow(Role.USER)
async def update_app(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await bodies.json_object(request, allowed={"maintenance"}, required={"maintenance"})
    app = await ctx.store.apps.set_maintenance(request.match_info["app"],
                                               bodies.boolean(body, "maintenance"))
    return web.json_response(render.app(ctx.config, app))


@allow(Role.USER)
async def delete_app(request: web.Request) -> web.Response:
    ctx = context(request)
    # Its add-ons first (Heroku destroys them with the app): the store refuses to delete an
    # app that still has one, so no database outlives the record of it.
    await ctx.addons.destroy_all(request.match_info["app"])
    app, slug_ids = await ctx.store.apps.delete(request.match_info["app"])
    await ctx.slugs.remove(slug_ids)  # after the commit: a crash before this only leaves files behind
    return web.json_response(render.app(ctx.config, app))


# Domains. The default hostname `<app>.<base domain>` is listed first and cannot be removed.

@allow(Role.USER)
async def list_domains(request: web.Request) -> web.Response:
    ctx = context(request)
    app, domains = await ctx.store.apps.list_domains(request.match_info["app"])
    return web.json_response([render.default_domain(ctx.config, app)]
                             + [render.domain(app, d) for d in domains])


@allow(Role.USER)
async def add_domain(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await bodies.json_object(request, allowed={"hostname"}, required={"hostname"})
    hostname = bodies.named(names.hostname, body["hostname"])
    base = ctx.config.base_domain
    if hostname == base or hostname.removeprefix("*.").endswith("." + base):
        raise invalid(f"{hostname} is under the platform's base domain {base}, where every app "
                      f"already has <app>.{base}; add a domain you own")
    app = await ctx.store.apps.get(request.match_info["app"])
    domain = await ctx.store.apps.add_domain(app.id, hostname)
    return web.json_response(render.domain(app, domain), status=201)


@allow(Role.USER)
async def remove_domain(request: web.Request) -> web.Response:
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    hostname = request.match_info["hostname"]
    if hostname.lower() == ctx.config.default_hostname(app.name):
        raise invalid(f"{hostname} is the app's default hostname; it goes away with the app")
    domain = await ctx.store.apps.remove_domain(app.id, hostname)
    return web.json_response(render.domain(app, domain))


# Features.

@allow(Role.USER)
async def list_features(request: web.Request) -> web.Response:
    features = await context(request).store.apps.list_features(request.match_info["app"])
    return web.json_response([render.feature(f) for f in features])


@allow(Role.USER)
async def get_feature(request: web.Request) -> web.Response:
    feature = await context(request).store.apps.get_feature(request.match_info["app"],
                                                            request.match_info["feature"])
    return web.json_response(render.feature(feature))


@allow(Role.USER)
async def update_feature(request: web.Request) -> web.Response:
    body = await bodies.json_object(request, allowed={"enabled"}, required={"enabled"})
    feature = await context(request).store.apps.set_feature(
        request.match_info["app"], request.match_info["feature"], bodies.boolean(body, "enabled"))
    return web.json_response(render.feature(feature))
