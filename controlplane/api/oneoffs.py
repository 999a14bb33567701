"""One-off dynos (`dynomesh run`): create one, and the two ends of an attached session.

- `POST /apps/{app}/dynos` creates `run.N` with the current release's slug and config vars
  (Heroku's Platform API: Dyno Create); `attach: true` makes its output and input a session
  at `attach_url` instead of the app's log stream.
- `GET /apps/{app}/dynos/{dyno}/attach` (user): the caller's end of that session (WebSocket).
- `GET /vms/{vm}/dynos/{dyno}/attach` (dynomgr): the dyno manager's end, for a dyno placed on
  its VM. Both meet in this node's `Rendezvous` (controlplane/attach.py); docs/attach.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from dynomesh.tasks import cancel_and_wait
from controlplane import names, sizes
from controlplane.api import bodies, render
from controlplane.api.auth import TOKEN_KEY, actor, allow
from controlplane.api.context import context
from controlplane.api.errors import ApiError, invalid
from controlplane.attach import (ATTACHED, AttachRefused, Side, early_frames, forward,
                                 relay)
from controlplane.feeds.stream import base_url
from controlplane.store.models import RUN_TYPE, OneOff, Role

MAX_COMMAND = 64 * 1024
# Heroku ends a one-off dyno after 24 hours at the latest; a forgotten `run` ends then too.
DEFAULT_TIMEOUT = 24 * 3600
MAX_TIMEOUT = 24 * 3600
# The caller waits for its dyno to be placed, to fetch its slug and to start; the dyno manager
# waits only briefly for a caller, who was there before the dyno was even placed.
CALLER_WAIT = 300.0
DYNO_WAIT = 60.0
_FIELDS = {"command", "attach", "tty", "env", "size", "timeout"}


def _tty(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10000
                       for v in value)):
        raise invalid("'tty' must be [columns, rows] of the caller's terminal, or null")
    return value[0], value[1]


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid('\'env\' must be an object of strings, e.g. {"DEBUG": "1"}')
    for key, val in value.items():
        bodies.named(names.config_key, key)
        if not isinstance(val, str) or "\0" in val:
            raise invalid(f"env {key} must be a string without NUL bytes")
    return dict(value)


def one_off_spec(body: dict, node_url: str) -> tuple[OneOff, sizes.DynoSize]:
    command = bodies.string(body, "command", max_length=MAX_COMMAND)
    if not command.strip():
        raise invalid("'command' is empty: say what to run, e.g. `dynomesh run bash`")
    attach = bodies.boolean(body, "attach") if "attach" in body else False
    size = sizes.SIZES[sizes.DEFAULT_SIZE]
    if "size" in body:
        found = sizes.lookup(body["size"]) if isinstance(body["size"], str) else None
        if found is None:
            raise invalid(f"unknown dyno size {body['size']!r}; sizes: {', '.join(sizes.SIZES)}")
        size = found
    timeout = bodies.integer(body.get("timeout", DEFAULT_TIMEOUT), "timeout", low=1,
                             high=MAX_TIMEOUT)
    tty = _tty(body.get("tty"))  # checked even when detached: a typo is still a typo
    spec = OneOff(command, attach_url=node_url if attach else None,
                  tty=tty if attach else None,
                  env=_env(body.get("env", {})), timeout=timeout)
    return spec, size


@allow(Role.USER)
async def create_one_off(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await bodies.json_object(request, allowed=_FIELDS, required={"command"})
    node_url = base_url(request, ctx.config.public_url)
    spec, size = one_off_spec(body, node_url)
    app, dyno = await ctx.store.oneoffs.run(request.match_info["app"], spec, size=size.name,
                                            memory_mb=size.memory_mb, type_=RUN_TYPE)
    how = "attached" if spec.attach_url else "detached"
    ctx.applog.write(app.name, f"Starting process with command `{spec.command}` by "
                               f"{actor(request)} ({dyno.name}, {how})")
    shown = render.dyno(app, dyno)
    if spec.attach_url:
        shown["attach_url"] = f"{node_url}/apps/{app.name}/dynos/{dyno.id}/attach"
    return web.json_response(shown, status=201)


async def _session(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    return ws


async def _end(ws: web.WebSocketResponse, message: str) -> web.WebSocketResponse:
    await ws.send_json({"op": "error", "message": message})
    await ws.close()
    return ws


async def _abandon(ctx, dyno_id: str, meeting: asyncio.Future) -> None:
    """Remove a one-off dyno whose caller is gone before it started; finished even if the
    handler is being cancelled."""
    try:
        await cancel_and_wait(meeting)
    except Exception:  # refused or met: the dyno is abandoned all the same
        pass
    await asyncio.shield(ctx.store.oneoffs.abandon(dyno_id))


@allow(Role.USER)
async def attach_caller(request: web.Request) -> web.StreamResponse:
    """The CLI's end: frames typed before the dyno is there are held, then relayed."""
    ctx = context(request)
    app, dyno = await ctx.store.dynos.get(request.match_info["app"], request.match_info["dyno"])
    if dyno.one_off is None or dyno.one_off.attach_url is None:
        raise invalid(f"{dyno.name} is not an attached one-off dyno: `dynomesh logs --app "
                      f"{app.name} --dyno {dyno.name}` shows its output")
    here = base_url(request, ctx.config.public_url)
    if dyno.one_off.attach_url != here:
        raise ApiError(409, "attach_elsewhere", f"{dyno.name}'s session is on the control node "
                       f"at {dyno.one_off.attach_url}; attach there")
    ws = await _session(request)
    meeting = asyncio.ensure_future(ctx.rendezvous.meet(dyno.id, Side.CALLER, ws, CALLER_WAIT))
    try:
        held = await early_frames(ws, meeting)
        other = await meeting if held is not None else None
    except AttachRefused as exc:
        return await _end(ws, str(exc))
    except asyncio.CancelledError:  # the caller went away (a server that cancels handlers)
        await _abandon(ctx, dyno.id, meeting)
        raise
    if held is None:  # the caller left before its dyno came: nobody will use the dyno
        await _abandon(ctx, dyno.id, meeting)
        return ws
    if other is None:
        await _abandon(ctx, dyno.id, meeting)
        return await _end(ws, f"{dyno.name} did not start within {CALLER_WAIT:g} s; it was "
                              f"removed (`dynomesh ps --app {app.name}` shows whether VMs have "
                              "room)")
    await ws.send_str(ATTACHED)
    for message in held:
        await forward(message, other)
    await relay(ws, other)
    return ws


@allow(Role.DYNOMGR)
async def attach_dyno(request: web.Request) -> web.StreamResponse:
    """The dyno manager's end, for a one-off dyno placed on its own VM."""
    ctx = context(request)
    vm_id = request.match_info["vm"]
    if request[TOKEN_KEY].vm_id != vm_id:
        raise ApiError(403, "forbidden", f"this dynomgr token is not bound to VM {vm_id!r}")
    dyno_id = request.match_info["dyno"]
    if not await ctx.store.oneoffs.placed_on(dyno_id, vm_id):
        raise ApiError(404, "not_found", f"no attached one-off dyno {dyno_id!r} on VM {vm_id!r}")
    ws = await _session(request)
    try:
        other = await ctx.rendezvous.meet(dyno_id, Side.DYNO, ws, DYNO_WAIT)
    except AttachRefused as exc:
        return await _end(ws, str(exc))
    if other is None:
        return await _end(ws, f"nobody attached to this dyno within {DYNO_WAIT:g} s")
    await ws.send_str(ATTACHED)
    await relay(ws, other)
    return ws
