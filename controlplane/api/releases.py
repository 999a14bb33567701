"""Slugs, releases (deploy and rollback), config vars and formation."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controlplane import names, sizes
from controlplane.api import bodies, render
from controlplane.api.auth import actor, allow
from controlplane.api.context import context
from controlplane.api.errors import ApiError, invalid
from controlplane.slugstore import (ChecksumMismatch, SlugRejected, SlugStoreError, SlugTooLarge,
                                   parse_checksum)
from controlplane.store import errors
from controlplane.store.models import FormationUpdate, Role

SLUG_CHUNK = 256 * 1024
RELEASE_HEADER = "Dynomesh-Release"  # the version a config change created, if any
MAX_CONFIG_VALUE = 32 * 1024  # Heroku's limit for all of an app's config vars together


# Slugs: the body is the .tar.gz itself; X-Slug-Checksum says what its SHA-256 must be.

@allow(Role.USER)
async def upload_slug(request: web.Request) -> web.Response:
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    try:
        expected = parse_checksum(request.headers.get("X-Slug-Checksum"))
    except SlugRejected as exc:
        raise invalid(str(exc)) from exc
    limit = ctx.config.max_slug_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "request_too_large", f"the slug is {request.content_length} bytes, "
                       f"over the {limit}-byte limit: list what it need not carry in .slugignore")
    try:
        received = await ctx.slugs.receive(request.content.iter_chunked(SLUG_CHUNK),
                                           expected_sha256=expected,
                                           max_bytes=ctx.config.max_slug_bytes)
    except SlugTooLarge as exc:
        raise ApiError(413, "request_too_large", str(exc)) from exc
    except ChecksumMismatch as exc:
        raise ApiError(422, "checksum_mismatch", str(exc)) from exc
    except SlugRejected as exc:
        raise ApiError(422, "invalid_slug", str(exc)) from exc
    except SlugStoreError as exc:
        raise ApiError(503, "slug_store_unavailable", str(exc)) from exc
    try:
        slug = await ctx.store.releases.add_slug(
            app.id, slug_id=received.id, checksum=received.checksum, size=received.size,
            process_types=received.process_types)
    except errors.StoreError:
        await ctx.slugs.remove([received.id])  # not recorded, so nothing may point at the file
        raise
    return web.json_response(render.slug(app, slug), status=201)


@allow(Role.USER)
async def get_slug(request: web.Request) -> web.Response:
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    slug = await ctx.store.releases.get_slug(app.id, request.match_info["slug"])
    return web.json_response(render.slug(app, slug))


# Releases.

@allow(Role.USER)
async def list_releases(request: web.Request) -> web.Response:
    ctx = context(request)
    limit = bodies.limit(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    releases = await ctx.store.releases.list(app.id, limit=limit)
    return web.json_response([render.release(app, r) for r in releases])


MAX_WAIT = 60  # seconds a `?wait=` may hold the request (the CLI asks again)


@allow(Role.USER)
async def get_release(request: web.Request) -> web.Response:
    """`?wait=S` holds the answer while the release is `pending` (its release phase runs), up
    to S seconds: `deploy` waits this way for the release to go live or fail."""
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    ref = request.match_info["release"]
    wait = request.query.get("wait")
    if wait is None:
        release = await ctx.store.releases.get(app.id, ref)
    else:
        if not wait.isdigit():
            raise invalid("'wait' must be a whole number of seconds")
        seconds = bodies.integer(int(wait), "wait", low=0, high=MAX_WAIT)
        release = await ctx.store.releases.settled(app.id, ref, timeout=seconds)
    return web.json_response(render.release(app, release))


@allow(Role.USER)
async def create_release(request: web.Request) -> web.Response:
    """{"slug": id} deploys a slug; {"release": id or version} rolls back to that release."""
    ctx = context(request)
    body = await bodies.json_object(request, allowed={"slug", "release", "description"})
    if ("slug" in body) == ("release" in body):
        raise invalid("give either 'slug' (to deploy it) or 'release' (to roll back to it)")
    app = await ctx.store.apps.get(request.match_info["app"])
    if "slug" in body:
        description = bodies.string(body, "description", max_length=200) \
            if "description" in body else None
        release = await ctx.store.releases.create(app.id, bodies.string(body, "slug"),
                                                  description=description)
    else:
        if "description" in body:
            raise invalid("a rollback's description is always 'Rollback to vN'")
        target = body["release"]
        if isinstance(target, bool) or not isinstance(target, (str, int)):
            raise invalid("'release' must be a release id or version number")
        release = await ctx.store.releases.rollback(app.id, target)
    log_release(request, app.name, release)
    return web.json_response(render.release(app, release), status=201)


def log_release(request: web.Request, app_name: str, release) -> None:
    # Heroku's pair of lines: what happened, then the release it made.
    who = actor(request)
    applog = context(request).applog
    applog.write(app_name, f"{release.description} by {who}")
    applog.write(app_name, f"Release v{release.version} created by {who}")


# Config vars: PATCH with a null value deletes the key; a real change is a new release.

@allow(Role.USER)
async def get_config(request: web.Request) -> web.Response:
    return web.json_response(await context(request).store.releases.config(
        request.match_info["app"]))


@allow(Role.USER)
async def update_config(request: web.Request) -> web.Response:
    ctx = context(request)
    raw = await bodies.read_limited(request)
    body = bodies.parse_json(raw) if raw.strip() else None
    if not isinstance(body, dict) or not body:
        raise invalid('send a JSON object of config vars, e.g. {"GREETING": "hi", "OLD": null}')
    changes: dict[str, str | None] = {}
    for key, value in body.items():
        bodies.named(names.config_key, key)
        if value is not None and not isinstance(value, str):
            raise invalid(f"the value of {key} must be a string (or null to remove it)")
        if value is not None and len(value) > MAX_CONFIG_VALUE:
            raise invalid(f"the value of {key} is longer than {MAX_CONFIG_VALUE} characters")
        changes[key] = value
    app = await ctx.store.apps.get(request.match_info["app"])
    config, release = await ctx.store.releases.update_config(app.id, changes)
    if release is not None:
        log_release(request, app.name, release)
    headers = {RELEASE_HEADER: str(release.version)} if release else {}
    return web.json_response(config, headers=headers)


# Formation.

def _formation_update(item: Any, where: str) -> FormationUpdate:
    if not isinstance(item, dict):
        raise invalid(f"{where} must be an object like {{\"type\": \"web\", \"quantity\": 2}}")
    unknown = sorted(set(item) - {"type", "quantity", "size"})
    if unknown:
        raise invalid(f"{where}: unknown field {unknown[0]!r}; fields: quantity, size, type")
    if "type" not in item:
        raise invalid(f"{where}: missing field 'type'")
    type_ = bodies.named(names.process_type, item["type"])
    if "quantity" not in item and "size" not in item:
        raise invalid(f"{where}: give 'quantity', 'size' or both")
    quantity = (bodies.integer(item["quantity"], "quantity", low=0, high=sizes.MAX_QUANTITY)
                if "quantity" in item else None)
    size = None
    if "size" in item:
        if not isinstance(item["size"], str) or sizes.lookup(item["size"]) is None:
            raise invalid(f"unknown dyno size {item['size']!r}; sizes: {', '.join(sizes.SIZES)}")
        size = sizes.lookup(item["size"]).name
    return FormationUpdate(type_, quantity, size)


@allow(Role.USER)
async def list_formation(request: web.Request) -> web.Response:
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    entries = await ctx.store.releases.formation(app.id)
    return web.json_response([render.formation(app, e) for e in entries])


@allow(Role.USER)
async def get_formation(request: web.Request) -> web.Response:
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    wanted = request.match_info["type"]
    for entry in await ctx.store.releases.formation(app.id):
        if entry.type == wanted:
            return web.json_response(render.formation(app, entry))
    raise errors.NotFound(f"no process type {wanted!r} in {app.name}'s current release")


@allow(Role.USER)
async def batch_update_formation(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await bodies.json_object(request, allowed={"updates"}, required={"updates"})
    items = body["updates"]
    if not isinstance(items, list) or not items:
        raise invalid("'updates' must be a non-empty list")
    updates = [_formation_update(item, f"updates[{i}]") for i, item in enumerate(items)]
    types = [u.type for u in updates]
    if len(set(types)) != len(types):
        raise invalid("each process type may appear once in 'updates'")
    app = await ctx.store.apps.get(request.match_info["app"])
    entries = await scale(request, app, updates)
    return web.json_response([render.formation(app, e) for e in entries])


async def scale(request: web.Request, app, updates: list[FormationUpdate]):
    """Apply the updates; a change goes into the app's log (`Scale to web=3, worker=1 by …`)."""
    ctx = context(request)
    scaled = await ctx.store.releases.scale(app.id, updates)
    if scaled.changed:
        formation = ", ".join(f"{e.type}={e.quantity}" + (
            f":{e.size}" if e.size != sizes.DEFAULT_SIZE else "") for e in scaled.formation)
        ctx.applog.write(app.name, f"Scale to {formation} by {actor(request)}")
    return scaled.formation


@allow(Role.USER)
async def update_formation(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await bodies.json_object(request, allowed={"quantity", "size"})
    update = _formation_update({"type": request.match_info["type"], **body}, "the body")
    app = await ctx.store.apps.get(request.match_info["app"])
    entries = await scale(request, app, [update])
    entry = next(e for e in entries if e.type == update.type)
    return web.json_response(render.formation(app, entry))
