"""Builds: a source archive in, a slug and a release out (controlplane/builds/, docs/api.md).

`POST /apps/{app}/builds` takes the source as the body (a .tar.gz, `X-Slug-Checksum` its
SHA-256), starts the build and answers 201 at once; `GET …/builds/{build}/output` streams its
output as plain text lines while it runs (on the node running it) and replays it after.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from controlplane.api import bodies, render
from controlplane.api.auth import actor, allow
from controlplane.api.context import context
from controlplane.api.errors import ApiError, invalid
from controlplane.builds.service import BuildsUnavailable
from controlplane.slugstore import (ChecksumMismatch, SlugRejected, SlugTooLarge, parse_checksum,
                                    receive_file)
from controlplane.store.models import Role

SOURCE_CHUNK = 256 * 1024


@allow(Role.USER)
async def create_build(request: web.Request) -> web.Response:
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    try:
        expected = parse_checksum(request.headers.get("X-Slug-Checksum"))
    except SlugRejected as exc:
        raise invalid(str(exc)) from exc
    description = request.query.get("description")
    if description is not None and not 1 <= len(description) <= 200:
        raise invalid("'description' must be 1 to 200 characters")
    limit = ctx.config.max_slug_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "request_too_large", f"the source is {request.content_length} "
                       f"bytes, over the {limit}-byte limit: list what it need not carry in "
                       ".slugignore")
    try:
        source = ctx.builds.incoming_path(str(uuid.uuid4()))
    except BuildsUnavailable as exc:
        raise ApiError(503, "builds_unavailable", str(exc)) from exc
    try:
        await receive_file(request.content.iter_chunked(SOURCE_CHUNK), source,
                           expected_sha256=expected, max_bytes=limit, what="source")
    except BaseException as exc:
        source.unlink(missing_ok=True)
        if isinstance(exc, SlugTooLarge):
            raise ApiError(413, "request_too_large", str(exc)) from exc
        if isinstance(exc, ChecksumMismatch):
            raise ApiError(422, "checksum_mismatch", str(exc)) from exc
        raise
    build = await ctx.builds.begin(app, source, f"sha256:{expected}", actor(request),
                                   description=description)
    return web.json_response(render.build(app, build), status=201)


@allow(Role.USER)
async def list_builds(request: web.Request) -> web.Response:
    ctx = context(request)
    limit = bodies.limit(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    found = await ctx.store.builds.list(app.id, limit=limit)
    return web.json_response([render.build(app, b) for b in found])


@allow(Role.USER)
async def get_build(request: web.Request) -> web.Response:
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    build = await ctx.store.builds.get(app.id, request.match_info["build"])
    return web.json_response(render.build(app, build))


@allow(Role.USER)
async def build_output(request: web.Request) -> web.StreamResponse:
    """Plain text: the lines so far, then each as it comes until the build ends."""
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    build = await ctx.store.builds.get(app.id, request.match_info["build"])
    live = ctx.builds.output(build.id)
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    if live is None:
        kept = await ctx.store.builds.get(app.id, build.id, with_output=True)
        await response.write((kept.output or "").encode())
    else:
        async for line in live.follow():
            await response.write(line.encode() + b"\n")
    await response.write_eof()
    return response
