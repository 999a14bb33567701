"""Request and response limits, and the RFC 9112 checks that httptools leaves to the router.

Sans-IO: plain functions and one small class over what the parser delivered; they raise
`RequestRejected` / `ResponseRejected` naming the router's answer, and never touch a socket.

What httptools (llhttp, strict mode) already refuses, so the router never sees it: bare LF and
bare CR line endings, obs-fold, whitespace before a colon, CR/LF/NUL and other controls in
names and values, a header line without a colon, bad chunk framing, repeated or listed
Content-Length, a request Transfer-Encoding whose last coding is not chunked, Content-Length
in trailers, invalid methods, versions other than 0.9, 1.0, 1.1 and 2.0.

What it accepts and the router checks here, only where it matters and never per field on the
normal path:

  * sizes: llhttp has no limits and httptools joins a field's pieces as they arrive. The
    client connection counts the bytes of an incomplete head (an addition per read); only a
    head larger than `Limits.request_head_check` is checked field by field
    (`check_request_head`), and one that keeps growing is bounded by `GrowthGuard`, so a
    slowly sent endless line costs at most one line limit of memory;
  * the request target: origin-form ("/path") on the normal path; absolute-form is accepted
    and its authority replaces Host (RFC 9112 §3.2.2); "*" only for OPTIONS; CONNECT never
    (`origin_form`);
  * Host: exactly one, not empty, a valid host[:port] (RFC 9112 §3.2; `valid_host`);
  * trailers: no field that frames, routes or controls the message (`check_trailers`);
  * the request line: llhttp takes any number of spaces between method, target and version;
    RFC 9112 §3 allows exactly one (`exact_request_line`, on the raw bytes, only when the
    client connection's one-index test cannot tell);
  * a repeated Content-Length with the same value, which llhttp refuses and RFC 9112 §6.3
    lets a recipient take as one (`without_repeated_lengths`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from router import errors
from router.config import Limits
from router.errors import RequestRejected, ResponseRejected

Fields = Sequence[tuple[bytes, bytes]]

# RFC 3986 §3.2.2 host (an IP literal or a reg-name) and an optional port (RFC 9110 §4.2.3
# allows an empty one).
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]{0,5})?")

# RFC 9110 §6.5.1: fields that frame, route or control the message, authenticate, or say how
# to read the content cannot come after it. The router also owns the forwarding fields.
FORBIDDEN_TRAILERS = frozenset({
    b"content-length", b"transfer-encoding", b"host", b"connection", b"keep-alive",
    b"proxy-connection", b"te", b"trailer", b"upgrade", b"expect", b"max-forwards",
    b"cache-control", b"pragma", b"range", b"if-match", b"if-none-match",
    b"if-modified-since", b"if-unmodified-since", b"if-range", b"authorization",
    b"proxy-authorization", b"proxy-authenticate", b"www-authenticate", b"cookie",
    b"set-cookie", b"content-encoding", b"content-type", b"content-range", b"age",
    b"expires", b"date", b"location", b"retry-after", b"vary", b"x-forwarded-for",
    b"x-forwarded-proto", b"x-forwarded-port", b"x-request-id", b"x-request-start", b"via",
})


def valid_host(value: bytes) -> bool:
    """A Host field value the router could route on: `name`, `name:port`, `[v6]:port`."""
    return _HOST.fullmatch(value) is not None


def check_request_head(method: bytes, target: bytes, fields: Fields, limits: Limits) -> None:
    """The exact size checks for a head larger than `limits.request_head_check`."""
    if len(method) + len(target) + 10 > limits.request_line:  # "M T HTTP/1.1"
        raise RequestRejected(errors.REQUEST_LINE_TOO_LONG)
    if len(fields) > limits.headers:
        raise RequestRejected(errors.TOO_MANY_HEADERS)
    _check_lines(fields, limits)


def check_trailers(trailers: Fields, limits: Limits) -> None:
    """A request's trailer section: sizes as for header fields, and no forbidden field."""
    if len(trailers) > limits.headers:
        raise RequestRejected(errors.TOO_MANY_HEADERS)
    _check_lines(trailers, limits)
    for name, _ in trailers:
        if name.lower() in FORBIDDEN_TRAILERS:
            raise RequestRejected(errors.BAD_TRAILERS)


def _check_lines(fields: Fields, limits: Limits) -> None:
    line, name_limit = limits.header_line - 2, limits.header_name  # "name: value"
    for name, value in fields:
        if len(name) > name_limit or len(name) + len(value) > line:
            raise RequestRejected(errors.HEADER_TOO_LONG)


def allowed_trailers(trailers: Fields) -> list[tuple[bytes, bytes]]:
    """A response's trailer fields minus the forbidden ones (dropped, not relayed)."""
    return [field for field in trailers if field[0].lower() not in FORBIDDEN_TRAILERS]


def check_response_head(reason_length: int, fields: Fields, limits: Limits) -> None:
    """The exact size checks for a response head larger than `limits.response_head_check`."""
    if reason_length + 13 > limits.response_status_line:  # "HTTP/1.1 200 " + reason
        raise ResponseRejected(errors.RESPONSE_TOO_LARGE)
    if len(fields) > limits.headers:
        raise ResponseRejected(errors.RESPONSE_TOO_LARGE)
    line, cookie = limits.response_header_line - 2, limits.set_cookie_line - 2
    for name, value in fields:
        size = len(name) + len(value)
        if size > line or (size > cookie and name.lower() == b"set-cookie"):
            raise ResponseRejected(errors.RESPONSE_TOO_LARGE)


def origin_form(method: bytes, target: bytes, fields: Fields
                ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A request target that is not a path, made one; -> (target, fields) to forward.

    Absolute-form (RFC 9112 §3.2.2): the target's authority replaces the Host field, and the
    dyno gets the path; a request without a Host field is still refused (§3.2: a server
    answers 400 to an HTTP/1.1 request without one; Heroku does not take HTTP/1.0 without
    Host either). Asterisk-form only for OPTIONS (§3.2.4). Anything else is refused.
    """
    if method == b"CONNECT":
        raise RequestRejected(errors.CONNECT_METHOD)
    if target == b"*":
        if method == b"OPTIONS":
            return target, list(fields)
        raise RequestRejected(errors.BAD_TARGET)
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        raise RequestRejected(errors.BAD_TARGET)
    end = len(rest)
    for delimiter in (b"/", b"?"):
        found = rest.find(delimiter)
        if 0 <= found < end:
            end = found
    authority, path = rest[:end], rest[end:]
    if b"@" in authority:  # RFC 9110 §4.2.4: no userinfo in http(s) URIs
        raise RequestRejected(errors.BAD_TARGET)
    if not authority or not valid_host(authority):
        raise RequestRejected(errors.BAD_HOST)
    if not any(name.lower() == b"host" for name, _ in fields):
        raise RequestRejected(errors.BAD_HOST)
    if not path.startswith(b"/"):
        path = b"/" + path
    kept = [field for field in fields if field[0].lower() != b"host"]
    return path, [(b"Host", authority), *kept]


class GrowthGuard:
    """Bounds a head (or trailer section) that keeps growing without completing.

    httptools joins a field's pieces as they arrive and reports the field only when the next
    one begins, so the bytes received while the list of reported fields stays the same all
    belong to the field being read (or, before the first one is reported, to the start line
    and the first field). Past `line_limit` (+ `first_line_limit` before the first field)
    bytes without progress, some line is too long. The caller runs `check` after each read
    only once an incomplete section is larger than the size that needs checking, so on the
    normal path this class is never touched.
    """

    __slots__ = ("line_limit", "first_line_limit", "fields_limit", "_section", "_count",
                 "_mark")

    OK, FIRST_LINE_TOO_LONG, LINE_TOO_LONG, TOO_MANY_FIELDS = range(4)

    def __init__(self, line_limit: int, first_line_limit: int, fields_limit: int) -> None:
        self.line_limit = line_limit
        self.first_line_limit = first_line_limit
        self.fields_limit = fields_limit
        self._section: list | None = None  # the field list being filled (one per section)
        self._count = 0
        self._mark = 0

    def check(self, received: int, fields: list, first_line: int) -> int:
        """`received` bytes of the section so far, the list its fields go to, the start line's
        length so far (0 when none) -> OK or what is wrong."""
        if first_line > self.first_line_limit:
            return self.FIRST_LINE_TOO_LONG
        count = len(fields)
        if count > self.fields_limit:
            return self.TOO_MANY_FIELDS
        if fields is not self._section or count != self._count or received < self._mark:
            self._section, self._count, self._mark = fields, count, received  # progress
            return self.OK
        allowed = self.line_limit if count else self.line_limit + self.first_line_limit
        if received - self._mark > allowed + 4:  # and their CRLFs
            return self.LINE_TOO_LONG
        return self.OK


def exact_request_line(raw: bytes | bytearray, anchored: bool, method: bytes, target: bytes,
                       version: str) -> bool:
    """Whether the request line in `raw` is exactly `method SP target SP HTTP/version CRLF`
    (RFC 9112 §3), given what llhttp parsed from it.

    `anchored`: `raw` starts where the request starts (after empty lines, which RFC 9112 §2.2
    lets a server skip). Otherwise the request began somewhere in `raw`, after other bytes of
    the same read (pipelining), and the exact line must occur in it: llhttp's only leniency
    here is extra spaces, so a line it parsed with extra spaces is found only if the client's
    own bytes before it spell the exact line too.
    """
    expected = b"%s %s HTTP/%s\r\n" % (method, target, version.encode("ascii"))
    if not anchored:
        return expected in raw
    start = len(raw) - len(raw.lstrip(b"\r\n"))
    return raw[start:start + len(expected)] == expected


def without_repeated_lengths(raw: bytes | bytearray) -> bytes | None:
    """A request head (and what follows it) with repeated Content-Length fields of the same
    value reduced to the first one (RFC 9112 §6.3); None while the head is not complete in
    `raw`. Raises RequestRejected when the values differ or one is not a number."""
    data = bytes(raw).lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    kept, length = lines[:1], None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.lower() != b"content-length":
            kept.append(line)
            continue
        value = value.strip(b" \t")
        if length is None:
            length = value
            kept.append(line)
        elif value != length:
            raise RequestRejected(errors.BAD_REQUEST)
    if length is None or not length.isdigit():
        raise RequestRejected(errors.BAD_REQUEST)
    return b"\r\n".join(kept) + data[end:]
