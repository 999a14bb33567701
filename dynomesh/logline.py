"""Heroku-style log lines, shared by the router, the dyno manager and the control plane.

Two things every component writes the same way:

* the RFC 5424 timestamp with microseconds that starts every line of an app's log stream
  (`2026-11-26T12:00:00.123456+00:00`), and
* logfmt key=value pairs (`at=info method=GET path="/" status=200`), with the quoting rules of
  Heroku's router lines: a value is quoted when it is empty or contains a space, a quote, `=` or
  a control character; some keys (path, fwd, desc) are always quoted, as Heroku does.

The router's per-request line is formatted on its hot path with its own precomputed template;
it must produce exactly what `logfmt()` would, and its tests check that against this module.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Iterable

_NEEDS_QUOTES = frozenset(' "=\\') | frozenset(chr(c) for c in range(32)) | {chr(127)}


def rfc5424_timestamp(at: float | None = None) -> str:
    """`2026-11-26T12:00:00.123456+00:00` for Unix time `at` (now if omitted), always UTC."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds")


def quote(value: str) -> str:
    """A logfmt value in double quotes, with backslash, quote and control characters escaped."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    escaped = "".join(ch if ch >= " " and ch != "\x7f" else f"\\x{ord(ch):02x}" for ch in escaped)
    return f'"{escaped}"'


def value(raw: object, *, always_quote: bool = False) -> str:
    """One logfmt value: bare when that is unambiguous, quoted otherwise."""
    text = raw if isinstance(raw, str) else str(raw)
    if always_quote or not text or any(ch in _NEEDS_QUOTES for ch in text):
        return quote(text)
    return text


def logfmt(pairs: Iterable[tuple[str, object]], *, quoted: Iterable[str] = ()) -> str:
    """`k1=v1 k2="v 2"` from (key, value) pairs, in order; keys in `quoted` are always quoted."""
    always = frozenset(quoted)
    return " ".join(f"{key}={value(val, always_quote=key in always)}" for key, val in pairs)


def line(source: str, process: str, message: str, at: float | None = None) -> str:
    """A full log-stream line: `<timestamp> heroku[router]: message` (no trailing newline)."""
    return f"{rfc5424_timestamp(at)} {source}[{process}]: {message}"
