"""Log lines as a drain sends them, without I/O: RFC 5424 messages, octet-counted frames.

One line of the app's stream, `2026-11-26T12:00:00.123456+00:00 app[web.1]: GET / 200`,
leaves as one frame (RFC 6587 section 3.4.1, octet counting: the message's length in bytes, a
space, the message):

    101 <190>1 2026-11-26T12:00:00.123456+00:00 d.9173ea1f-6f14-4976-9cf0-7cd0dafdcdbc app
        web.1 - GET / 200\n                                            (one line, cut here)

The message is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID MSG`, shaped the way Heroku's
Logplex sends it, so that receivers written for Heroku (Papertrail, Datadog, logplex parsers)
read it unchanged:

- APP-NAME is the line's source (`app`, `heroku`) and PROCID its process (`web.1`, `router`,
  `api`), as in Heroku's `<40>1 … host app web.3 - State changed from starting to up`;
- MSGID is `-` and, like Logplex, no STRUCTURED-DATA field follows it: MSG comes next;
- HOSTNAME is the drain's token (`d.<uuid>`), as Heroku writes it ("the drain token is written
  into all log messages", devcenter "Log Drains"): receivers that serve many senders tell them
  apart by it; `dynomesh drains` shows it;
- the message ends with a newline, counted in the frame's length, as Logplex does;
- TIMESTAMP is the line's own (RFC 5424 section 6.2.3, UTC with microseconds).

The same frames are a syslog drain's TCP stream and an HTTPS drain's POST body.
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.store.logs import LogEntry

# PRI = facility * 8 + severity (RFC 5424 section 6.2.1). Heroku uses local0, local3 and local7
# (devcenter "Log Drains"): the router's lines on local3, dyno output on local7, the rest on
# local0, all at severity info (6); the drain's own L10 notice is a warning (4).
_LOCAL0, _LOCAL3, _LOCAL7 = 16, 19, 23
_INFO, _WARNING = 6, 4
# RFC 5424 section 6: APP-NAME at most 48 printable ASCII characters, PROCID at most 128.
_APP_NAME_MAX = 48
_PROCID_MAX = 128


def priority(source: str, process: str, text: str = "") -> int:
    if source == "app":
        return _LOCAL7 * 8 + _INFO
    if process == "router":
        return _LOCAL3 * 8 + _INFO
    if process == "logs" and text.startswith("Error L"):
        return _LOCAL0 * 8 + _WARNING
    return _LOCAL0 * 8 + _INFO


def _field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, never empty (RFC 5424 NILVALUE)."""
    cleaned = "".join(ch for ch in value if "!" <= ch <= "~")[:limit]
    return cleaned or "-"


def message(entry: LogEntry, host: str) -> bytes:
    """One line as an RFC 5424 message, newline included."""
    return (f"<{priority(entry.source, entry.process, entry.text)}>1 {entry.at} {host} "
            f"{_field(entry.source, _APP_NAME_MAX)} {_field(entry.process, _PROCID_MAX)} - "
            f"{entry.text}\n").encode("utf-8", "replace")


def frame(msg: bytes) -> bytes:
    """RFC 6587 section 3.4.1: MSG-LEN SP SYSLOG-MSG, MSG-LEN in octets."""
    return b"%d %s" % (len(msg), msg)


def frames(entries: Iterable[LogEntry], host: str) -> bytes:
    """Consecutive frames: a syslog drain's bytes, or an HTTPS drain's POST body. Equal to
    joining `frame(message(e, host))`; the header of each (source, process) is built once."""
    heads: dict[tuple[str, str], tuple[str, str]] = {}
    out: list[bytes] = []
    for entry in entries:
        key = (entry.source, entry.process)
        head = heads.get(key)
        if head is None or entry.process == "logs":  # an L10 notice has its own priority
            head = (f"<{priority(entry.source, entry.process, entry.text)}>1 ",
                    f" {host} {_field(entry.source, _APP_NAME_MAX)} "
                    f"{_field(entry.process, _PROCID_MAX)} - ")
            heads[key] = head
        msg = f"{head[0]}{entry.at}{head[1]}{entry.text}\n".encode("utf-8", "replace")
        out.append(b"%d %s" % (len(msg), msg))
    return b"".join(out)
