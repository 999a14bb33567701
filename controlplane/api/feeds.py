"""The feeds routers and dyno managers follow, and slug downloads (docs/feeds.md)."""

from __future__ import annotations

import logging

from aiohttp import web

from controlplane.api.auth import TOKEN_KEY, allow
from controlplane.api.context import context
from controlplane.api.errors import ApiError, invalid
from controlplane.api.tokens import VM_ID
from controlplane.feeds.stream import (FeedResponse, as_since, base_url, serve_assignments,
                                       serve_routes)
from controlplane.slugstore import Redirect
from controlplane.store import errors
from controlplane.store.models import Role

log = logging.getLogger(__name__)


def _since(request: web.Request) -> int | None:
    try:
        return as_since(request.query.get("since"))
    except ValueError as exc:
        raise invalid(str(exc)) from exc


async def _stream(feed: FeedResponse, follow) -> web.StreamResponse:
    try:
        await follow
    except errors.StoreError as exc:
        if not feed.response.prepared:
            raise  # the usual JSON error (503 with Retry-After)
        # Mid-stream the status is sent: end the response; the follower resumes with `since`.
        log.warning("feeds: ending a feed response: %s", exc)
    return feed.response


@allow(Role.ROUTER, Role.USER)
async def route_feed(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    since = _since(request)
    feed = FeedResponse(request, ctx.config.feed_heartbeat)
    # Certificates' private keys go to routers only; a user watching the feed sees chains.
    withhold_keys = request[TOKEN_KEY].role is not Role.ROUTER
    return await _stream(feed, serve_routes(feed, ctx.routes, ctx.followers, since,
                                            withhold_keys))


@allow(Role.DYNOMGR, Role.USER)
async def assignment_feed(request: web.Request) -> web.StreamResponse:
    """A dyno manager follows its own VM's set; a user token may watch any VM's (`?vm=ID`)."""
    ctx = context(request)
    token = request[TOKEN_KEY]
    asked = request.query.get("vm")
    if token.role is Role.DYNOMGR:
        if asked not in (None, token.vm_id):
            raise ApiError(403, "forbidden", f"this dynomgr token is bound to VM "
                                             f"{token.vm_id!r}, not {asked!r}")
        vm_id = token.vm_id
    elif asked is None or not VM_ID.match(asked):
        raise invalid("name the VM whose assignments to watch: ?vm=ID")
    else:
        vm_id = asked
    since = _since(request)
    feed = FeedResponse(request, ctx.config.feed_heartbeat)
    return await _stream(feed, serve_assignments(
        feed, ctx.assignments, vm_id, base_url(request, ctx.config.public_url), since))


@allow(Role.DYNOMGR, Role.USER)
async def download_slug(request: web.Request) -> web.StreamResponse:
    """The slug archive. A dyno manager gets only slugs its VM's dynos run."""
    ctx = context(request)
    slug = await ctx.store.releases.find_slug(request.match_info["slug"])
    token = request[TOKEN_KEY]
    if token.role is Role.DYNOMGR and not await ctx.store.vms.runs_slug(token.vm_id, slug.id):
        raise ApiError(403, "forbidden", f"no dyno on VM {token.vm_id!r} runs slug {slug.id}")
    place = await ctx.slugs.locate(slug.id)
    if place is None:
        raise errors.NotFound(f"the file of slug {slug.id} is missing from the slug store")
    if isinstance(place, Redirect):
        # S3: a presigned URL; the agent follows it without its token (another origin).
        return web.Response(status=307, headers={"Location": place.url,
                                                 "X-Slug-Checksum": slug.checksum})
    return web.FileResponse(place.path, headers={"Content-Type": "application/gzip",
                                                 "X-Slug-Checksum": slug.checksum})
