"""Log lines on the wire, without I/O: the `POST /logs` body, filters, and how lines are shown.

A body (docs/logs.md) is UTF-8 text, one line per log line, each app's lines after a line
naming it:

    @hello
    2026-11-26T12:00:00.123456+00:00 heroku[router]: at=info method=GET path="/" …
    2026-11-26T12:00:00.125011+00:00 app[web.1]: listening on 20345

`parse_body` takes what it can: a bad line is refused on its own (counted, and the first few
named in the answer), so one odd byte never costs a router a whole batch. What a token may say
depends on its role: a router speaks for `heroku[router]`, a dyno manager for its dynos
(`app[web.1]`, `heroku[web.1]`); both may report their own dropped lines (`heroku[logs]`).
`heroku[api]` lines come from the control plane alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.names import APP_NAME
from controlplane.store.logs import LogEntry, NewLine
from controlplane.store.models import Role

# `2026-11-26T12:00:00.123456+00:00`: what logline.rfc5424_timestamp writes; in this one form
# (UTC, microseconds) timestamps sort as text, which is how the store orders lines.
TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")
TIMESTAMP_BYTES = 32
PROCESS = re.compile(r"[A-Za-z0-9_.-]{1,160}")
SOURCES = ("app", "heroku")
# Dyno output lines are at most 10 000 bytes; a router line with an 8 KiB path is about 9 KiB.
MAX_LINE_BYTES = 32 * 1024
MAX_ERRORS = 10  # bad lines named in an answer


def allowed_for(role: Role) -> Callable[[str, str], str | None]:
    """The rule for a role: (source, process) -> None if it may send such a line, else why."""
    def router(source: str, process: str) -> str | None:
        if source == "heroku" and process in ("router", "logs"):
            return None
        return f"a router token sends heroku[router] lines, not {source}[{process}]"

    def dynomgr(source: str, process: str) -> str | None:
        if source == "heroku" and process in ("router", "api"):
            return f"a dynomgr token cannot send heroku[{process}] lines"
        return None

    if role is Role.ROUTER:
        return router
    if role is Role.DYNOMGR:
        return dynomgr
    raise ValueError(f"{role.value} tokens do not send log lines")


@dataclass
class ParsedBody:
    lines: dict[str, list[NewLine]] = field(default_factory=dict)  # by app name, in order
    count: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def refuse(self, number: int, why: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"line {number}: {why}")


def parse_body(body: bytes, allowed: Callable[[str, str], str | None]) -> ParsedBody:
    parsed = ParsedBody()
    current: list[NewLine] | None = None
    app_error = "no @APP line names the app of this line"
    memo: dict = {}  # checked once a body: `heroku[router]` tags, timestamps' seconds
    for number, raw in enumerate(body.split(b"\n"), 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw:
            continue
        if raw[0] == 0x40:  # "@app"
            name = raw[1:].decode("utf-8", "replace")
            if APP_NAME.match(name):
                current = parsed.lines.setdefault(name, [])
            else:
                current = None
                app_error = f"invalid app name {name[:40]!r} in the @APP line before it"
                parsed.refuse(number, app_error)
            continue
        if current is None:
            parsed.refuse(number, app_error)
            continue
        line = parse_line(raw, allowed, memo)
        if line.__class__ is str:
            parsed.refuse(number, line)
            continue
        current.append(line)
        parsed.count += 1
    parsed.lines = {app: lines for app, lines in parsed.lines.items() if lines}
    return parsed


def parse_line(raw: bytes, allowed: Callable[[str, str], str | None],
               memo: dict | None = None) -> NewLine | str:
    """`<timestamp> <source>[<process>]: <text>` -> a NewLine, or why not (a str)."""
    if len(raw) > MAX_LINE_BYTES:
        return f"longer than {MAX_LINE_BYTES} bytes"
    if not _timestamped(raw, memo):
        return ("does not start with an RFC 5424 UTC timestamp with microseconds "
                "(2026-11-26T12:00:00.123456+00:00)")
    close = raw.find(b"]:", TIMESTAMP_BYTES + 1)
    if close < 0:
        return "no source[process]: after the timestamp (e.g. app[web.1]:)"
    tag = raw[TIMESTAMP_BYTES + 1:close]
    checked = memo.get(tag) if memo is not None else None
    if checked is None:
        checked = _check_tag(tag, allowed)
        if memo is not None:
            memo[tag] = checked
    if checked.__class__ is str:
        return checked
    text = raw[close + 3:] if raw[close + 2:close + 3] == b" " else raw[close + 2:]
    decoded = text.decode("utf-8", "replace")
    if "\x00" in decoded:  # PostgreSQL text cannot hold NUL
        decoded = decoded.replace("\x00", "\ufffd")
    return NewLine(raw[:TIMESTAMP_BYTES].decode("ascii"), checked[0], checked[1], decoded)


def _timestamped(raw: bytes, seen: dict | None) -> bool:
    """Whether `raw` starts with a timestamp and a space. Lines of one second share their
    first 19 bytes: those are matched once per body, the rest each time."""
    if raw[TIMESTAMP_BYTES:TIMESTAMP_BYTES + 1] != b" ":
        return False
    if seen is not None and raw[:19] in seen:
        return raw[19] == 0x2E and raw[20:26].isdigit() and raw[26:32] == b"+00:00"
    if TIMESTAMP.match(raw) is None:
        return False
    if seen is not None:
        seen[raw[:19]] = True
    return True


def _check_tag(tag: bytes, allowed: Callable[[str, str], str | None]) -> tuple[str, str] | str:
    """`heroku[router]` -> ("heroku", "router"), or why it is refused."""
    source, opening, process = tag.decode("ascii", "replace").partition("[")
    if not opening:
        return "no source[process]: after the timestamp (e.g. app[web.1]:)"
    if source not in SOURCES:
        return f"source {source[:20]!r} is not app or heroku"
    if not PROCESS.fullmatch(process):
        return f"invalid process name {process[:40]!r}"
    why = allowed(source, process)
    return why if why is not None else (source, process)


@dataclass(frozen=True)
class LogFilter:
    """`dyno`: one dyno (`web.1`), every dyno of a type (`web`), or a platform process
    (`router`, `api`); `source`: `app` (the dynos' own output) or `heroku` (the platform's)."""

    dyno: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.source is not None and self.source not in SOURCES:
            raise ValueError(f"source must be app or heroku, not {self.source!r}")
        if self.dyno is not None and not PROCESS.fullmatch(self.dyno):
            raise ValueError(f"invalid dyno {self.dyno!r}: e.g. web.1, web or router")

    @property
    def everything(self) -> bool:
        return self.dyno is None and self.source is None

    def matches(self, entry: LogEntry) -> bool:
        if self.source is not None and entry.source != self.source:
            return False
        dyno = self.dyno
        if dyno is not None and entry.process != dyno:
            # A process type names its dynos: `web` matches web.1, web.2, ...
            return "." not in dyno and entry.process.startswith(dyno + ".")
        return True


# -- how lines are shown ------------------------------------------------------------------------

def plain(entry: LogEntry) -> bytes:
    """Heroku's line: `2026-11-26T12:00:00.123456+00:00 app[web.1]: listening`."""
    return f"{entry.at} {entry.source}[{entry.process}]: {entry.text}\n".encode()


def ndjson(entry: LogEntry) -> bytes:
    return json.dumps({"type": "line", "seq": entry.seq, "at": entry.at,
                       "source": entry.source, "process": entry.process,
                       "text": entry.text}).encode() + b"\n"


class Rendered:
    """One delivery's lines, each rendered at most once per format for every tail."""

    __slots__ = ("entries", "_plain", "_ndjson")

    def __init__(self, entries: list[LogEntry]) -> None:
        self.entries = entries
        self._plain: list[bytes] | None = None
        self._ndjson: list[bytes] | None = None

    def lines(self, json_format: bool) -> list[bytes]:
        if json_format:
            if self._ndjson is None:
                self._ndjson = [ndjson(e) for e in self.entries]
            return self._ndjson
        if self._plain is None:
            self._plain = [plain(e) for e in self.entries]
        return self._plain
