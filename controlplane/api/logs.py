"""App logs: routers and dyno managers send lines in, users read and tail them (docs/logs.md).

`POST /logs` (router, dynomgr) takes a batch of lines and answers once they are stored.
`GET /apps/{app}/log` (user) answers an app's last lines, or with `tail=true` its last lines
then every new one as it arrives, for as long as the client reads. Lines are Heroku's text
(`text/plain`) or, for `Accept: application/x-ndjson`, one JSON object each (with the `seq`
a client resumes from: `after=SEQ`).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from dynomesh import logline
from controlplane.api import bodies
from controlplane.api.auth import TOKEN_KEY, allow
from controlplane.api.context import context
from controlplane.api.errors import ApiError, invalid
from controlplane.logs.lines import LogFilter, Rendered, allowed_for, parse_body
from controlplane.logs.tail import Tail
from controlplane.store.logs import KEEP, by_time
from controlplane.store.models import Role

# A batch of lines may be as large as a dyno manager's report.
MAX_LOG_BODY = bodies.MAX_REPORT_BYTES
DEFAULT_LINES = 100  # `heroku logs` shows the last 100 lines
NDJSON = "application/x-ndjson"
# A tail that was cut off gets this long to read what was already sent and the notice saying
# why, then its connection is closed whether it read them or not.
CUT_GRACE = 10.0
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@allow(Role.ROUTER, Role.DYNOMGR)
async def ingest(request: web.Request) -> web.Response:
    ctx = context(request)
    kind = request.headers.get("Content-Type", "text/plain").split(";")[0].strip().lower()
    if kind not in ("text/plain", "application/octet-stream", ""):
        raise ApiError(415, "unsupported_media_type", "send log lines as text/plain: '@APP' "
                       "lines each followed by that app's lines (docs/logs.md)")
    raw = await bodies.read_limited(request, MAX_LOG_BODY)
    parsed = parse_body(raw, allowed_for(request[TOKEN_KEY].role))
    accepted = ignored = 0
    unknown: tuple[str, ...] = ()
    if parsed.count:
        result = await ctx.logs.ingest.submit(parsed.lines, parsed.count)
        accepted, ignored, unknown = result.accepted, result.ignored, result.unknown_apps
    return web.json_response({"accepted": accepted, "ignored": ignored,
                              "unknown_apps": list(unknown), "rejected": parsed.rejected,
                              "errors": parsed.errors})


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise invalid(f"'{name}' must be true or false, not {value!r}")


def _number(request: web.Request, name: str, default: int | None, low: int,
            high: int | None) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        bound = f"{low}-{high}" if high is not None else f"at least {low}"
        raise invalid(f"'{name}' must be a whole number, {bound}; got {text!r}")
    return int(text)


@allow(Role.USER)
async def app_log(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    app = await ctx.store.apps.get(request.match_info["app"])
    lines = _number(request, "lines", DEFAULT_LINES, 1, KEEP)
    after = _number(request, "after", None, 0, None)
    tail = _flag(request, "tail")
    try:
        log_filter = LogFilter(request.query.get("dyno") or None,
                               request.query.get("source") or None)
    except ValueError as exc:
        raise invalid(str(exc)) from exc
    json_format = NDJSON in request.headers.get("Accept", "")
    content_type = NDJSON if json_format else "text/plain; charset=utf-8"
    if not tail:
        history, _ = await _history(ctx, app.id, lines, after, log_filter)
        return web.Response(body=b"".join(Rendered(history).lines(json_format)),
                            headers={"Content-Type": content_type})
    return await _tail(request, app.id, lines, after, log_filter, json_format, content_type)


async def _history(ctx, app_id: str, lines: int, after: int | None, log_filter: LogFilter):
    """(lines to show first, the seq they end at). With `after` (a client resuming): every
    kept line after it; without, or when `after` is beyond the app's newest line (the app
    was made again), the last `lines`."""
    matches = None if log_filter.everything else log_filter.matches
    if after is not None:
        entries, head = await ctx.store.logs.after(app_id, after, matches)
        if after <= head:
            return by_time(entries), head
    return await ctx.store.logs.recent(app_id, lines, matches)


async def _tail(request: web.Request, app_id: str, lines: int, after: int | None,
                log_filter: LogFilter, json_format: bool,
                content_type: str) -> web.StreamResponse:
    ctx = context(request)
    hub = ctx.logs.hub
    loop = asyncio.get_running_loop()
    abort: asyncio.TimerHandle | None = None

    def on_cut() -> None:
        nonlocal abort
        transport = request.transport
        if transport is not None and abort is None:
            abort = loop.call_later(CUT_GRACE, transport.abort)

    tail = Tail(app_id, log_filter, json_format=json_format, limit=ctx.config.tail_buffer,
                on_cut=on_cut)
    hub.add(tail)  # before the history is read: nothing in between is missed
    response = web.StreamResponse(headers={"Content-Type": content_type,
                                           "Cache-Control": "no-cache"})
    try:
        history, head = await _history(ctx, app_id, lines, after, log_filter)
        await response.prepare(request)
        if history:
            await response.write(b"".join(Rendered(history).lines(json_format)))
        hub.start(tail, head)
        heartbeat = ctx.config.feed_heartbeat
        while True:
            if not await tail.wait(heartbeat):
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the client went away while the app was quiet
                if json_format:
                    await response.write(b'{"type": "heartbeat"}\n')
                continue
            if tail.pending:
                await response.write(tail.take())
            if tail.cut:
                response.force_close()  # a reader this slow is not kept connected
                await response.write(_cut_notice(tail.behind, json_format))
                break
            if tail.closed:
                break
        await response.write_eof()
    except ConnectionError:
        pass  # the client hung up: the tail simply ends
    finally:
        hub.remove(tail)
        if abort is not None:
            abort.cancel()
    return response


def _cut_notice(behind: int, json_format: bool) -> bytes:
    """Heroku's L11: this tail could not keep up."""
    at = logline.rfc5424_timestamp()
    text = (f"Error L11 (Tail buffer overflow): tail session cut off after falling {behind} "
            f"messages behind; reconnect to go on")
    if json_format:
        return json.dumps({"type": "cut", "at": at, "source": "heroku", "process": "logs",
                           "text": text}).encode() + b"\n"
    return f"{at} heroku[logs]: {text}\n".encode()
