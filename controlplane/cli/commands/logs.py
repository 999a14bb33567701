"""logs: an app's log stream, the last lines or followed (`--tail`), like `heroku logs`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from urllib.parse import quote

from dynomesh.feedclient import RECONNECT_BACKOFF
from dynomesh.lines import LineSplitter, LineTooLong

from controlplane.cli.errors import CliError, Exit, usage
from controlplane.cli.registry import command, runs

KEEP = 1500  # the control plane keeps an app's last 1500 lines
NDJSON = "application/x-ndjson"
# One message of the log stream: a log line (at most 32 KiB) as JSON, its escapes included.
MAX_MESSAGE_BYTES = 1024 * 1024
# The control plane sends a tail a heartbeat every 5 s; nothing for this long: reconnect.
DEAD_AFTER = 15.0
# While the control plane stays away, say so again this often.
COMPLAIN_EVERY = 60.0


@command("logs", "show an app's log: router lines, its dynos' output and the platform's lines",
         example="dynomesh logs --app hello                   # the last 100 lines\n"
                 "dynomesh logs --tail --app hello            # then follow (Ctrl-C ends)\n"
                 "dynomesh logs -n 500 --dyno web.1 --source app --app hello\n"
                 "dynomesh logs --dyno router --app hello     # only the router's lines",
         json=True)
def logs(parser):
    parser.add_argument("-n", "--num", type=int, default=100, metavar="N",
                        help=f"how many of the last lines to show first (1-{KEEP}, default "
                             "100)")
    parser.add_argument("-t", "--tail", action="store_true",
                        help="keep showing new lines as they arrive; reconnects by itself if "
                             "the control plane restarts")
    parser.add_argument("-d", "--dyno", metavar="DYNO",
                        help="only this dyno (web.1), process type (web), or platform "
                             "process (router, api)")
    parser.add_argument("-s", "--source", choices=["app", "heroku"],
                        help="only the app's own output (app) or the platform's lines "
                             "(heroku)")


def render(line: dict) -> str:
    """Heroku's line: `2026-11-26T12:00:00.123456+00:00 app[web.1]: listening`."""
    return f"{line['at']} {line['source']}[{line['process']}]: {line['text']}"


class Printer:
    """Lines to stdout as text or JSON; remembers the newest `seq` shown (to resume after)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.after: int | None = None

    def chunk(self, messages: list[dict]) -> list[dict]:
        """Print the lines among `messages`; -> the other messages (heartbeats, a cut)."""
        out, others = [], []
        for message in messages:
            if message.get("type") != "line":
                others.append(message)
                continue
            # Lines come in time order, so seqs may step back; a client resuming asks for
            # what came after the newest seq it was shown.
            self.after = max(self.after or 0, message["seq"])
            if self.as_json:
                out.append(json.dumps({k: v for k, v in message.items() if k != "type"}))
            else:
                out.append(render(message))
        if out:
            sys.stdout.write("\n".join(out) + "\n")
            sys.stdout.flush()
        return others


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@runs(logs)
async def _(args, session):
    if not 1 <= args.num <= KEEP:
        raise usage(f"-n must be between 1 and {KEEP} (the control plane keeps an app's last "
                    f"{KEEP} lines), not {args.num}")
    name = session.app()
    printer = Printer(args.json)
    params = {"lines": str(args.num)}
    if args.dyno:
        params["dyno"] = args.dyno
    if args.source:
        params["source"] = args.source
    path = f"/apps/{quote(name, safe='')}/log"
    try:
        if args.tail:
            await _follow(session.api, path, {**params, "tail": "true"}, printer)
        else:
            await _read(session.api, path, params, printer, None)
    except BrokenPipeError:
        # The reader (`head`, a pager that was closed) has had enough: not an error. Point
        # stdout at /dev/null so that the interpreter's last flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


async def _read(api, path: str, params: dict, printer: Printer, read_timeout: float | None,
                opened: Callable[[], None] = lambda: None) -> str:
    """One response to its end; -> why it ended: "end", or "cut" (the tail was cut off)."""
    async with api.stream(path, params=params, headers={"Accept": NDJSON},
                          read_timeout=read_timeout) as response:
        opened()
        splitter = LineSplitter(MAX_MESSAGE_BYTES, overlong="refuse")
        async for data in response.content.iter_any():
            try:
                messages = [json.loads(line) for line in splitter.feed(data) if line.strip()]
            except LineTooLong as exc:
                raise CliError(Exit.UNAVAILABLE, f"the control plane sent a line too long to "
                                                 f"be a log message ({exc}); try again") from exc
            except ValueError as exc:
                raise CliError(Exit.UNAVAILABLE, f"the control plane sent a line that is not "
                                                 f"JSON ({exc}); try again") from exc
            for other in printer.chunk(messages):
                if other.get("type") == "cut":
                    note(render(other))
                    return "cut"
        return "end"


async def _follow(api, path: str, params: dict, printer: Printer) -> None:
    """Read the tail for ever, reconnecting after anything but a final refusal."""
    backoff = RECONNECT_BACKOFF.start()
    lost_at: float | None = None
    last_note = 0.0

    def opened() -> None:
        nonlocal lost_at
        if lost_at is not None:
            note(f"Reconnected to {api.api} after {time.monotonic() - lost_at:.1f} s; "
                 "resuming after the last line shown")
            lost_at = None
        backoff.reset()

    while True:
        query = dict(params)
        if printer.after is not None:
            query["after"] = str(printer.after)  # the control plane sends what was missed
        try:
            ended = await _read(api, path, query, printer, DEAD_AFTER, opened)
            if ended == "cut":
                note(f"This terminal read too slowly and the control plane cut the tail off; "
                     f"reconnecting (what came since the last line shown follows, up to the "
                     f"last {KEEP} lines)")
                continue
            reason = "the control plane ended the tail (it is stopping or restarting)"
        except CliError as exc:
            if exc.code is not Exit.UNAVAILABLE:
                raise  # the app is gone, the token revoked: reconnecting cannot help
            reason = exc.message
        now = time.monotonic()
        if lost_at is None:
            lost_at = last_note = now
            note(f"Lost the log stream: {reason}; reconnecting...")
        elif now - last_note >= COMPLAIN_EVERY:
            last_note = now
            note(f"Still reconnecting to {api.api} (for {now - lost_at:.0f} s): {reason}")
        await asyncio.sleep(backoff.next_delay())
