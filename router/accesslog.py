"""The router's per-request log line, and the buffered writer it goes through.

One line per request in Heroku's router format, prefixed like a Heroku log stream line:

    2026-11-26T12:00:00.123456+00:00 heroku[router]: at=info method=GET path="/"
    host=app1.localhost request_id=… fwd="127.0.0.1" dyno=web.1 connect=1ms service=18ms
    status=200 bytes=13 protocol=http

Router errors carry `at=error code=H10 desc="App crashed"` after `at`. Values are logfmt as the
shared `logline` module writes them (path, fwd and desc always quoted; others quoted only when
they must be); this module formats bytes directly from what the parser delivered, because it
runs once per request, and its tests check it against `logline.logfmt`.

Lines are appended to a `BufferedLogWriter` and handed to its sinks in batches, every quarter
second and whenever enough are pending. A sink is anything with `write_lines(records)`: stdout,
and, following a control plane, the shipper to its log stream (logship.py) beside it.
"""

from __future__ import annotations

import os
import re
import select
import sys
import time
from collections.abc import Sequence
from typing import BinaryIO, Protocol

# logline's rule: quote a value when it is empty or holds a space, quote, '=', backslash or a
# control character.
_NEEDS_QUOTES = re.compile(rb'[ "=\\\x00-\x1f\x7f]')
_NEEDS_ESCAPE = re.compile(rb'["\\\x00-\x1f\x7f]')
_ESCAPES = {ord("\\"): b"\\\\", ord('"'): b'\\"', ord("\n"): b"\\n", ord("\r"): b"\\r"}


def _escape_slow(value: bytes) -> bytes:
    out = bytearray(b'"')
    for byte in value:
        escaped = _ESCAPES.get(byte)
        if escaped is not None:
            out += escaped
        elif byte < 0x20 or byte == 0x7F:
            out += b"\\x%02x" % byte
        else:
            out.append(byte)
    out += b'"'
    return bytes(out)


def quoted(value: bytes) -> bytes:
    """A value that is always quoted (path, fwd, desc)."""
    if _NEEDS_ESCAPE.search(value) is None:
        return b'"' + value + b'"'
    return _escape_slow(value)


def bare(value: bytes) -> bytes:
    """A value quoted only when logfmt must quote it."""
    if value and _NEEDS_QUOTES.search(value) is None:
        return value
    return _escape_slow(value)


# `b"=" in value` first tries the needle as an int, and CPython raises and clears a TypeError
# on the way, which costs more than formatting a number; an int needle goes straight to memchr.
_EQUALS = ord("=")

# The pieces of an info line between its values.
_INFO_METHOD = b"+00:00 heroku[router]: at=info method="
_INFO_REQUEST_ID = b" request_id="
# Numbers below 1000 as text (milliseconds, small bodies), "000" to "999" for the
# microseconds' halves, and the connect time and the status with the field names around them
# (fewer pieces to join): cheaper than formatting an int.
_DECIMAL = tuple(b"%d" % n for n in range(1000))
_THREE_DIGITS = tuple(b"%03d" % n for n in range(1000))
_CONNECT_PARTS = tuple(b" connect=%dms service=" % n for n in range(1000))
_STATUS_PARTS = tuple(b"ms status=%d bytes=" % n for n in range(1000))

_PREFIX = b"%s.%06d+00:00 heroku[router]: "
_ERROR = (_PREFIX + b"at=%s code=%s desc=%s method=%s path=%s host=%s request_id=%s fwd=%s "
          b"dyno=%s connect=%s service=%s status=%d bytes=%d protocol=%s")
_PLAIN = (_PREFIX + b"at=%s desc=%s method=%s path=%s host=%s request_id=%s fwd=%s "
          b"dyno=%s connect=%s service=%s status=%d bytes=%d protocol=%s")


class Timestamps:
    """RFC 5424 UTC timestamps; the date-and-seconds part is formatted once per second."""

    __slots__ = ("second", "text", "dotted")

    def __init__(self) -> None:
        # The second `text` formats; AccessLog.info reads `second` and `dotted` (`text` and
        # the dot before the microseconds) directly, once per request.
        self.second = -1
        self.text = b""
        self.dotted = b""

    def split(self, wall: float) -> tuple[bytes, int]:
        """-> (b"2026-11-26T12:00:00", microseconds)."""
        second = int(wall)
        if second != self.second:
            self.second = second
            self.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
            self.dotted = self.text + b"."
        return self.text, int((wall - second) * 1_000_000)



class LogSink(Protocol):
    def write_lines(self, records: list[tuple[str | None, bytes]]) -> None:
        """Consume a batch of (app name or None, line without newline)."""


class StreamSink:
    """Lines to a binary stream (stdout by default), one write per batch.

    A blocking write, as nginx's access log is: a stalled reader of stdout stalls the router,
    which is the operator's to fix; a closed one (EPIPE) is counted and reported once.

    `atomic=True` (processes sharing one stdout, `--workers`): the batch is written straight to
    the file descriptor in pieces of whole lines of at most PIPE_BUF bytes, which a pipe
    never interleaves with another writer's (POSIX); a longer line goes alone.
    """

    def __init__(self, stream: BinaryIO | None = None, atomic: bool = False) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._atomic = atomic
        self.failures = 0

    def write_lines(self, records: list[tuple[str | None, bytes]]) -> None:
        try:
            if self._atomic:
                self._write_atomic([line for _, line in records])
            else:
                data = b"\n".join([line for _, line in records])
                self._stream.write(data + b"\n")
                self._stream.flush()
        except (BrokenPipeError, ValueError, OSError) as error:
            self.failures += 1
            if self.failures == 1:
                print(f"dynomesh router: cannot write log lines ({error}); dropping them",
                      file=sys.stderr)

    def _write_atomic(self, lines: list[bytes]) -> None:
        self._stream.flush()
        fd = self._stream.fileno()
        piece: list[bytes] = []
        size = 0
        for line in lines:
            if piece and size + len(line) + 1 > select.PIPE_BUF:
                _write_all(fd, b"\n".join(piece) + b"\n")
                piece, size = [], 0
            piece.append(line)
            size += len(line) + 1
        if piece:
            _write_all(fd, b"\n".join(piece) + b"\n")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class MemorySink:
    """Keeps the most recent lines in memory (for embedding and tests)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.lines: list[bytes] = []
        self.records: list[tuple[str | None, bytes]] = []
        self._limit = limit

    def write_lines(self, records: list[tuple[str | None, bytes]]) -> None:
        self.records.extend(records)
        self.lines.extend(line for _, line in records)
        if len(self.records) > self._limit:
            del self.records[: -self._limit]
            del self.lines[: -self._limit]


class BufferedLogWriter:
    """Collects lines on the request path; `flush()` hands them to every sink."""

    __slots__ = ("_sinks", "_pending", "_max_pending")

    def __init__(self, sinks: Sequence[LogSink], max_pending: int = 512) -> None:
        self._sinks = tuple(sinks)
        self._pending: list[tuple[str | None, bytes]] = []
        self._max_pending = max_pending

    def write(self, app: str | None, line: bytes) -> None:
        pending = self._pending
        pending.append((app, line))
        if len(pending) >= self._max_pending:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        for sink in self._sinks:
            sink.write_lines(batch)


class AccessLog:
    """Formats the per-request line; holds nothing per request."""

    __slots__ = ("writer", "_timestamps", "_protocol", "_protocol_part", "_fwd_parts",
                 "_path_parts")

    def __init__(self, writer: BufferedLogWriter, protocol: bytes = b"http",
                 version: bytes = b"") -> None:
        """`version`: the HTTP version, logged as `http_version=` after the protocol when
        given (HTTP/2's lines; a line without one is HTTP/1.x)."""
        self.writer = writer
        self._timestamps = Timestamps()
        self._protocol = protocol + b" http_version=" + version if version else protocol
        self._protocol_part = b" protocol=" + self._protocol
        # fwd values repeat (one per client address), and so do paths: remember their quoted
        # form with the field names around it (` path="/" host=`), bounded in entries (and,
        # for paths, which clients choose, in length).
        self._fwd_parts: dict[bytes, bytes] = {}
        self._path_parts: dict[bytes, bytes] = {}

    def info(self, app: str, wall: float, method: bytes, path: bytes, host: bytes,
             request_id: bytes, fwd: bytes, dyno: bytes, connect_ms: int, service_ms: int,
             status: int, nbytes: int, note: bytes = b"") -> None:
        """A request the dyno answered. `note`: logfmt fields to add at the end (rare).

        `host` matched the routing table, so it holds only host-name characters and needs no
        quoting; `dyno` is already a logfmt value (see DynoPool).

        Joined from pieces rather than formatted: bytes `%` costs about 400 instructions a
        field, a join piece a third of that, and the quoted path and fwd are cached with the
        field names around them, as are the numbers below 1000.
        """
        timestamps = self._timestamps
        second = int(wall)
        if second != timestamps.second:
            timestamps.split(wall)  # a new second: formatted once
        micros = int((wall - second) * 1_000_000)  # below 1 000 000: wall - second < 1
        try:  # (a dict subscript in a try costs less than .get and a None test)
            path_part = self._path_parts[path]
        except KeyError:
            path_part = self._remember_path(path)
        try:
            fwd_part = self._fwd_parts[fwd]
        except KeyError:
            fwd_part = self._remember_fwd(fwd)
        line = b"".join((
            timestamps.dotted, _THREE_DIGITS[micros // 1000], _THREE_DIGITS[micros % 1000],
            _INFO_METHOD, method, path_part, host, _INFO_REQUEST_ID,
            request_id if _EQUALS not in request_id else _escape_slow(request_id),
            fwd_part, dyno,
            _CONNECT_PARTS[connect_ms] if connect_ms < 1000
            else b" connect=%dms service=" % connect_ms,
            _DECIMAL[service_ms] if service_ms < 1000 else b"%d" % service_ms,
            _STATUS_PARTS[status] if status < 1000 else b"ms status=%d bytes=" % status,
            _DECIMAL[nbytes] if nbytes < 1000 else b"%d" % nbytes, self._protocol_part, note))
        writer = self.writer
        pending = writer._pending
        pending.append((app, line))
        if len(pending) >= writer._max_pending:
            writer.flush()

    def _remember_path(self, path: bytes) -> bytes:
        value = b" path=" + quoted(path) + b" host="
        if len(path) <= 256:
            cache = self._path_parts
            if len(cache) >= 4096:
                cache.clear()
            cache[path] = value
        return value

    def _remember_fwd(self, fwd: bytes) -> bytes:
        cache = self._fwd_parts
        if len(cache) >= 4096:
            cache.clear()
        value = cache[fwd] = b" fwd=" + quoted(fwd) + b" dyno="
        return value

    def router_error(self, app: str | None, wall: float, code: str | None, desc: str,
                     level: str, method: bytes, path: bytes, host: bytes | None,
                     request_id: bytes, fwd: bytes, dyno: bytes | None,
                     connect_ms: int | None, service_ms: int | None, status: int,
                     nbytes: int) -> None:
        """A response the router made itself, or a failed exchange (rare: formatted slowly)."""
        second, micros = self._timestamps.split(wall)
        connect = b"" if connect_ms is None else b"%dms" % connect_ms
        service = b"" if service_ms is None else b"%dms" % service_ms
        common = (quoted(desc.encode()), method, quoted(path), bare(host or b""),
                  bare(request_id), quoted(fwd), dyno if dyno else b'""', bare(connect),
                  bare(service), status, nbytes, self._protocol)
        if code is None:
            line = _PLAIN % (second, micros, level.encode(), *common)
        else:
            line = _ERROR % (second, micros, level.encode(), code.encode(), *common)
        self.writer.write(app, line)
