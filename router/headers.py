"""Header rules for forwarded requests and relayed responses (sans-IO).

Plain functions over `(name, value)` byte pairs as the parser delivered them, in order. They
return the head bytes to send and the facts the router needs (host, request id, framing); they
never touch a socket, so every rule is a unit test.

What changes on the way up (Heroku's router behaviour):
  * hop-by-hop fields and the fields named in `Connection` are removed (RFC 9110 §7.6.1);
  * `X-Request-Id` is kept if it is 20-200 characters of `[A-Za-z0-9+/=-]`, else replaced by a
    new UUID v4; exactly one is sent;
  * `X-Forwarded-For` gets the peer address appended (one header, the client's list first);
    `X-Forwarded-Proto` / `-Port` are set from the listener; `X-Request-Start` is Unix ms;
  * `Via: 1.1 dynomesh` is appended (RFC 9110 §7.6.3), on requests and on responses.
Everything else keeps its order, spelling and repeats. A request that breaks a rule the
router enforces (a second Host, an unsupported Expect or transfer coding, an overlong field
name) raises `RequestRejected`; a response, `ResponseRejected`. Those checks sit in branches the
normal path never takes; so do the version rules of the rarer heads (HTTP/1.0, Expect, Upgrade,
both framings: `unusual_request_head`).
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Sequence
from http import HTTPStatus

from router import errors
from router.errors import RequestRejected, ResponseRejected

Headers = Sequence[tuple[bytes, bytes]]

VIA = b"Via: 1.1 dynomesh\r\n"
# The fields the router adds to every request (request id, forwarded-for, start in Unix ms).
_VIA_END = VIA + b"\r\n"  # a response head's last field and its end
_ADDED = b"X-Request-Id: %s\r\nX-Forwarded-For: %s\r\nX-Request-Start: %d\r\n"


class Framing(enum.IntEnum):
    """How a message body is delimited on one side of the router (RFC 9112 §6)."""

    NONE = 0  # no body at all (GET without length, HEAD response, 204, 304)
    LENGTH = 1  # Content-Length bytes
    CHUNKED = 2  # chunked transfer coding, trailers allowed
    CLOSE = 3  # until the connection closes (responses only)


NONE, LENGTH, CHUNKED, CLOSE = Framing.NONE, Framing.LENGTH, Framing.CHUNKED, Framing.CLOSE

# RFC 9110 §7.6.1 plus the de-facto ones (Keep-Alive, Proxy-Connection) and RFC 2616's
# proxy-auth pair, which are meant for the proxy itself. `Trailer` is kept: it announces the
# trailer fields, which the router relays.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade",
    b"proxy-authenticate", b"proxy-authorization",
})

# What the request rule does with a field (looked up by lower-case name). The order of the
# branches in `RequestRewriter.rewrite` follows how common each is.
(_PASS, _DROP, _HOST, _REQUEST_ID, _XFF, _CONNECTION, _TRANSFER_ENCODING, _LENGTH, _UPGRADE,
 _EXPECT, _FORWARDED, _NAME_TOO_LONG) = range(12)
_REQUEST_FIELDS: dict[bytes, int] = {name: _DROP for name in HOP_BY_HOP}
_REQUEST_FIELDS.update({
    b"connection": _CONNECTION,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"content-length": _LENGTH,
    b"host": _HOST,
    b"x-request-id": _REQUEST_ID,
    b"x-forwarded-for": _XFF,
    b"upgrade": _UPGRADE,
    b"expect": _EXPECT,
    # Set by the router from its own listener and clock; a client's values are not trusted.
    b"x-forwarded-proto": _DROP,
    b"x-forwarded-port": _DROP,
    b"x-request-start": _DROP,
})
# From a trusted load balancer, its X-Forwarded-Proto/-Port describe the client's connection.
_TRUSTED_REQUEST_FIELDS = _REQUEST_FIELDS | {b"x-forwarded-proto": _FORWARDED,
                                             b"x-forwarded-port": _FORWARDED}

# What `RequestRewriter.rewrite` reports besides the head: bits of one int, 0 on the normal path.
CONNECTION_FIELD = 1  # a Connection field was present: keep-alive needs a closer look
EXPECT_CONTINUE = 2  # Expect: 100-continue, answered by the router (RFC 9110 §10.1.1)
UPGRADE = 4  # Upgrade with Connection: upgrade, forwarded as such (RFC 9110 §7.8)
LENGTH_AND_CHUNKED = 8  # both framings: chunked wins, and the connection closes after
# (RFC 9112 §6.1: "the server MUST close the connection after responding")

_RESPONSE_FIELDS: dict[bytes, int] = {name: _DROP for name in HOP_BY_HOP}
_RESPONSE_FIELDS.update({
    b"connection": _CONNECTION,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"content-length": _LENGTH,
})


class FieldActions:
    """Action by field name as spelled on the wire, remembered so that repeated spellings
    skip the lower-casing; bounded, since clients choose the spellings."""

    __slots__ = ("_by_lower", "by_raw", "passing", "_limit", "_name_limit")

    def __init__(self, by_lower: dict[bytes, int], limit: int = 1024,
                 name_limit: int | None = None) -> None:
        self._by_lower = by_lower
        self.by_raw: dict[bytes, int] = {}  # read directly by the loops below
        # The spellings learnt to be _PASS: most fields are, and one set test per field lets
        # them skip the action lookup and its branches.
        self.passing: set[bytes] = set()
        self._limit = limit
        self._name_limit = name_limit

    def get(self, name: bytes) -> int:
        action = self.by_raw.get(name)
        return action if action is not None else self.learn(name)

    def learn(self, name: bytes) -> int:
        # A name past the limit is never remembered, so the check costs nothing per field.
        if self._name_limit is not None and len(name) > self._name_limit:
            return _NAME_TOO_LONG
        action = self._by_lower.get(name.lower(), _PASS)
        if len(self.by_raw) >= self._limit:
            self.by_raw.clear()
            self.passing.clear()
        self.by_raw[name] = action
        if action == _PASS:
            self.passing.add(name)
        return action


_RESPONSE_ACTIONS = FieldActions(_RESPONSE_FIELDS)
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close",
                               b"keep-alive, close"})

_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9+/=-]{20,200}")


def valid_request_id(value: bytes) -> bool:
    """Heroku keeps a client's X-Request-Id if it is 20-200 of [A-Za-z0-9+/=-]."""
    return _VALID_REQUEST_ID.fullmatch(value) is not None


class RequestIds:
    """UUID v4 request ids (RFC 9562 §5.4), made in batches from one random read.

    `str(uuid.uuid4())` costs several microseconds and the router makes one per request; here
    a whole batch is made by a handful of C-level operations on one buffer (the version and
    variant bits by two `translate` calls, the hex and its dashes by `bytes.hex` and four
    strided deletes), then cut into ids by `map` over precomputed slices.
    """

    __slots__ = ("_random_bytes", "_batch", "_slices", "ready")

    _VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))  # byte 6: 0100xxxx
    _VARIANT_1 = bytes((b & 0x3F) | 0x80 for b in range(256))  # byte 8: 10xxxxxx

    def __init__(self, random_bytes: Callable[[int], bytes] = os.urandom, batch: int = 256):
        self._random_bytes = random_bytes
        self._batch = batch
        # Where each id sits in a batch's text: `map` cuts them in C, no Python loop per id.
        self._slices = tuple(slice(i, i + 36) for i in range(0, 36 * batch, 36))
        self.ready: list[bytes] = []  # ids made and not yet handed out (popped from the end)

    def next(self) -> bytes:
        try:
            return self.ready.pop()
        except IndexError:  # once per batch
            self._refill()
            return self.ready.pop()

    def _refill(self) -> None:
        raw = bytearray(self._random_bytes(16 * self._batch))
        raw[6::16] = raw[6::16].translate(self._VERSION_4)
        raw[8::16] = raw[8::16].translate(self._VARIANT_1)
        # 40 characters per id, "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg-hhhh-"; the dashes at 39,
        # 34, 29 and 4 of each go (the highest first, so the lower offsets stay put), leaving
        # "aaaabbbb-cccc-dddd-eeee-ffffgggghhhh", 36 per id.
        text = bytearray(raw.hex("-", 2), "ascii") + b"-"
        del text[39::40]
        del text[34::39]
        del text[29::38]
        del text[4::37]
        self.ready = list(map(bytes(text).__getitem__, self._slices))


def connection_options(values: Sequence[bytes]) -> set[bytes]:
    """Lower-case field names listed in Connection headers (RFC 9110 §7.6.1)."""
    names: set[bytes] = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                names.add(token)
    return names


def _without_fields(lines: list[bytes], start: int, names: set[bytes]) -> list[bytes]:
    """`lines` (groups of name, ": ", value, CRLF from `start`) minus the fields in `names`."""
    kept = lines[:start]
    for i in range(start, len(lines), 4):
        if lines[i].lower() not in names:
            kept += lines[i:i + 4]
    return kept


class RequestRewriter:
    """The forwarding rules for one listener (its scheme and port are fixed per listener).

    With `trusted=True` the rules for a trusted load balancer's connections: its
    X-Forwarded-Proto/-Port are kept (the router's own are added only when absent) and its
    X-Forwarded-For already names the client, so the balancer is not appended to it.
    """

    __slots__ = ("_tail", "_proto", "_port", "_request_ids", "_actions", "_trusted")

    def __init__(self, *, proto: str, port: int, request_ids: RequestIds,
                 max_name: int = 1000, trusted: bool = False) -> None:
        self._proto = f"X-Forwarded-Proto: {proto}\r\n".encode("ascii")
        self._port = f"X-Forwarded-Port: {port}\r\n".encode("ascii")
        # What every request from an untrusted peer ends with, as one format: the fields the
        # router adds, Via, and the end of the head.
        self._tail = _ADDED + self._proto + self._port + VIA + b"\r\n"
        self._request_ids = request_ids
        self._actions = FieldActions(_TRUSTED_REQUEST_FIELDS if trusted else _REQUEST_FIELDS,
                                     name_limit=max_name)
        self._trusted = trusted

    def rewrite(self, method: bytes, target: bytes, headers: Headers, peer: bytes,
                now_ms: int) -> tuple[bytes, bytes, bytes, bytes, Framing, int]:
        """-> (head to send upstream, Host value, request id, X-Forwarded-For value, body
        framing, flags: CONNECTION_FIELD | EXPECT_CONTINUE | UPGRADE | LENGTH_AND_CHUNKED).

        The upstream request is always HTTP/1.1 with keep-alive (the router pools connections).
        Raises RequestRejected for a missing, empty or repeated Host (RFC 9112 §3.2), an
        Expect other than 100-continue (RFC 9110 §10.1.1: 417), a transfer coding other than
        chunked (501, as nginx), and a field name over the limit.
        """
        out = [method, b" ", target, b" HTTP/1.1\r\n"]
        host = request_id = xff = None
        framing = NONE
        flags = 0
        listed: list[bytes] | None = None
        upgrade: bytes | None = None
        length_seen = False
        actions = self._actions
        known, passing = actions.by_raw, actions.passing
        for name, value in headers:
            if name in passing:
                out += (name, b": ", value, b"\r\n")
                continue
            try:  # (a dict subscript in a try costs less than .get and a None test)
                action = known[name]
            except KeyError:
                action = actions.learn(name)
            if action == _PASS:  # a spelling seen for the first time
                out += (name, b": ", value, b"\r\n")
            elif action == _HOST:
                if host is not None:
                    raise RequestRejected(errors.BAD_HOST)
                host = value
                out += (name, b": ", value, b"\r\n")
            elif action == _LENGTH:
                length_seen = True
                if framing is NONE:
                    framing = LENGTH
                out += (name, b": ", value, b"\r\n")
            elif action == _REQUEST_ID:
                if request_id is None:
                    request_id = value
            elif action == _XFF:
                xff = value if xff is None else xff + b", " + value
            elif action == _TRANSFER_ENCODING:
                # The parser refuses a request whose last coding is not chunked; a coding
                # before it (gzip, chunked) would need decoding the router does not do.
                if value != b"chunked" and value.strip().lower() != b"chunked":
                    raise RequestRejected(errors.UNSUPPORTED_TRANSFER_CODING)
                framing = CHUNKED
            elif action == _CONNECTION:
                flags |= CONNECTION_FIELD
                if value not in _PLAIN_CONNECTION:
                    if listed is None:
                        listed = []
                    listed.append(value)
            elif action == _DROP:
                pass
            elif action == _UPGRADE:
                upgrade = value.strip()
            elif action == _EXPECT:
                expectation = value.strip().lower()
                if expectation == b"100-continue":
                    flags |= EXPECT_CONTINUE  # the router answers it; the dyno gets the body
                elif expectation:
                    raise RequestRejected(errors.EXPECTATION_FAILED)
                # (an empty Expect expects nothing: dropped, the request goes on as usual)
            elif action == _FORWARDED:
                out += (name, b": ", value, b"\r\n")
            else:  # _NAME_TOO_LONG
                raise RequestRejected(errors.HEADER_TOO_LONG)
        if not host:
            raise RequestRejected(errors.BAD_HOST)
        if listed is not None:
            names = connection_options(listed)
            if upgrade and b"upgrade" in names:
                flags |= UPGRADE
            names -= {b"close", b"keep-alive"}
            # Never let Connection remove what the router itself relies on.
            names -= {b"host", b"content-length", b"transfer-encoding"}
            if names:
                out = _without_fields(out, 4, names)
                if b"x-request-id" in names:
                    request_id = None
                if b"x-forwarded-for" in names:
                    xff = None
        if framing is CHUNKED:
            if length_seen:  # RFC 9112 §6.3: chunked wins; never forward both
                out = _without_fields(out, 4, {b"content-length"})
                flags |= LENGTH_AND_CHUNKED
            out.append(b"Transfer-Encoding: chunked\r\n")
        if flags & UPGRADE:
            out.append(b"Connection: Upgrade\r\nUpgrade: %s\r\n" % upgrade)
        if request_id is None or not valid_request_id(request_id):
            ready = self._request_ids.ready  # RequestIds.next(), inlined: once per request
            request_id = ready.pop() if ready else self._request_ids.next()
        if xff is None:
            xff = peer
        elif not self._trusted:
            xff = xff + b", " + peer
        if not self._trusted:
            out.append(self._tail % (request_id, xff, now_ms))  # the fields, Via, the end
        else:
            out.append(_ADDED % (request_id, xff, now_ms))
            out.append(self._trusted_forwarded(out))
        return b"".join(out), host, request_id, xff, framing, flags

    def _trusted_forwarded(self, out: list[bytes]) -> bytes:
        """The router's X-Forwarded-Proto/-Port where the balancer sent none, and Via."""
        sent = {part.lower() for part in out[4::4]}
        return ((self._proto if b"x-forwarded-proto" not in sent else b"")
                + (self._port if b"x-forwarded-port" not in sent else b"") + VIA + b"\r\n")


def unusual_request_head(version: str, parser_upgrade: bool, keep_alive: bool, flags: int,
                         framing: Framing, fields: Headers) -> tuple[bool, bool, int, int]:
    """The rarer request heads: HTTP/1.0, Connection fields, Expect, Upgrade, both framings
    (`flags` from RequestRewriter.rewrite; `version` and `parser_upgrade` as llhttp parsed
    them). -> (keep the connection alive, client speaks HTTP/1.1, flags, the Content-Length of
    an upgrade request's body or 0); RequestRejected for a head the router refuses."""
    if version == "1.1":
        http11 = True
    elif version == "1.0":
        # Kept alive only when it asks (Connection: keep-alive, RFC 9112 §9.3); its answers
        # then carry a length or end with the connection (rewrite_response).
        http11 = False
        if framing is CHUNKED:  # RFC 9112 §6.1: Transfer-Encoding in 1.0 is faulty framing
            raise RequestRejected(errors.BAD_FRAMING)
        if flags & UPGRADE:  # RFC 9110 §7.8: a 1.0 Upgrade is ignored; the parser did not
            raise RequestRejected(errors.BAD_REQUEST)
        flags &= ~EXPECT_CONTINUE  # RFC 9110 §10.1.1: ignored in HTTP/1.0
    else:
        raise RequestRejected(errors.VERSION_NOT_SUPPORTED)  # 0.9, 2.0
    if flags & LENGTH_AND_CHUNKED:
        keep_alive = False
    if bool(flags & UPGRADE) != parser_upgrade:
        raise RequestRejected(errors.BAD_REQUEST)  # the parser and the rules disagree
    upgrade_body = 0
    if flags & UPGRADE and framing is not NONE:
        # httptools has llhttp skip an upgrade request's body and hands over what follows the
        # head; a body of known length is read off that (standins.UpgradeBody), the rest is
        # for the new protocol. A chunked one would need parsing there: refused.
        if framing is CHUNKED:
            raise RequestRejected(errors.BAD_FRAMING)
        upgrade_body = int(next(value for name, value in fields
                                if name.lower() == b"content-length"))
    if flags & EXPECT_CONTINUE and framing is NONE:
        flags &= ~EXPECT_CONTINUE  # nothing to continue with
    return keep_alive, http11, flags, upgrade_body


def _status_lines() -> dict[int, tuple[bytes, bytes]]:
    lines = {}
    for status in range(100, 600):
        try:
            phrase = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            continue
        lines[status] = (phrase, b"HTTP/1.1 %d %s\r\n" % (status, phrase))
    return lines


# status -> (standard reason phrase, status line with it): the status line is precomputed for
# the usual case, a dyno sending the standard phrase.
STATUS_LINES = _status_lines()
# status -> ([standard phrase], its status line): the response parser's on_status pieces are
# that list in the usual case, which one list comparison in C tells.
_STANDARD = {status: ([phrase], line) for status, (phrase, line) in STATUS_LINES.items()}
# RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ); llhttp lets controls through.
_BAD_REASON = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def status_line(status: int, reason: bytes | None = None) -> bytes:
    """The status line for the client, with the dyno's reason phrase byte for byte (`None`:
    the standard one). Any three-digit code is valid on the wire (RFC 9110 §15); a code below
    100 or a phrase with control characters is refused (H17)."""
    known = STATUS_LINES.get(status)
    if known is not None and (reason is None or reason == known[0]):
        return known[1]
    if not 100 <= status <= 999 or (reason and _BAD_REASON.search(reason) is not None):
        raise ResponseRejected(errors.BAD_RESPONSE)
    return b"HTTP/1.1 %d %s\r\n" % (status, b"" if reason is None else reason)


def response_framing(status: int, *, head_request: bool, chunked: bool, has_length: bool,
                     client_http11: bool) -> tuple[Framing, Framing]:
    """-> (how the dyno's body is delimited, how the router delimits it to the client).

    RFC 9112 §6.3: HEAD responses, 1xx, 204 and 304 have no body whatever their headers say;
    chunked beats Content-Length; with neither, the body runs until the dyno closes. Such a
    body is re-framed as chunked for an HTTP/1.1 client so its connection survives; an HTTP/1.0
    client gets close-delimited bodies (it cannot read chunked).
    """
    if head_request or status < 200 or status == 204 or status == 304:
        return NONE, NONE
    if chunked:
        return CHUNKED, CHUNKED if client_http11 else CLOSE
    if has_length:
        return LENGTH, LENGTH
    return CLOSE, CHUNKED if client_http11 else CLOSE


def rewrite_response(status: int, headers: Headers, head_request: bool, client_http11: bool,
                     client_keep_alive: bool, reason: list[bytes] | bytes | None = None
                     ) -> tuple[bytes, Framing, Framing, bool]:
    """-> (head for the client, dyno-side framing, client-side framing, keep client alive).

    `reason` is the dyno's reason phrase (or its pieces as the parser gave them), relayed as
    it is; None: the standard one."""
    try:  # status_line(), inlined for the usual case: once per response
        pieces, line = _STANDARD[status]
    except KeyError:  # another code: relayed, or refused (below 100)
        out = [status_line(status, _joined(reason))]
    else:
        out = [line if reason == pieces or reason is None
               else status_line(status, _joined(reason))]
    chunked = has_length = False
    listed: list[bytes] | None = None
    known, passing = _RESPONSE_ACTIONS.by_raw, _RESPONSE_ACTIONS.passing
    for name, value in headers:
        if name in passing:
            out += (name, b": ", value, b"\r\n")
            continue
        try:  # (a dict subscript in a try costs less than .get and a None test)
            action = known[name]
        except KeyError:
            action = _RESPONSE_ACTIONS.learn(name)
        if action == _PASS:  # a spelling seen for the first time
            out += (name, b": ", value, b"\r\n")
        elif action == _LENGTH:
            has_length = True
            out += (name, b": ", value, b"\r\n")
        elif action == _TRANSFER_ENCODING:
            # Other codings before chunked would have to be passed on or decoded; like nginx,
            # the router refuses them (H17) rather than relay a body it re-frames wrongly.
            if value != b"chunked" and value.strip().lower() != b"chunked":
                raise ResponseRejected(errors.BAD_RESPONSE)
            chunked = True
        elif action == _CONNECTION and value not in _PLAIN_CONNECTION:
            if listed is None:
                listed = []
            listed.append(value)
    if head_request or status < 200 or status == 204 or status == 304:
        upstream = downstream = NONE
    else:  # as response_framing, inlined: this runs once per response
        upstream = CHUNKED if chunked else LENGTH if has_length else CLOSE
        downstream = upstream if upstream is LENGTH or client_http11 else CLOSE
        if upstream is CLOSE and client_http11:
            downstream = CHUNKED
    if listed is not None:
        names = connection_options(listed) - {b"close", b"keep-alive", b"content-length"}
        if names:
            out = _without_fields(out, 1, names)
    if chunked and has_length:
        out = _without_fields(out, 1, {b"content-length"})  # chunked wins (RFC 9112 §6.3)
    keep_alive = client_keep_alive and downstream is not CLOSE
    if downstream is CHUNKED:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    elif not client_http11:
        out.append(b"Connection: keep-alive\r\n")  # HTTP/1.0 closes unless told (RFC 9112 §9.3)
    out.append(_VIA_END)
    return b"".join(out), upstream, downstream, keep_alive


def _joined(reason: list[bytes] | bytes | None) -> bytes | None:
    return reason if reason is None or type(reason) is bytes else b"".join(reason)


def interim_response(status: int, headers: Headers, reason: bytes | None = None) -> bytes:
    """A 1xx response (100 Continue, 103 Early Hints) for an HTTP/1.1 client, hop-by-hop
    fields removed (RFC 9110 §15.2: a proxy forwards interim responses)."""
    out = [status_line(status, reason)]
    known = _RESPONSE_ACTIONS.by_raw
    for name, value in headers:
        action = known.get(name)
        if action is None:
            action = _RESPONSE_ACTIONS.learn(name)
        if action == _PASS:
            out += (name, b": ", value, b"\r\n")
    out.append(VIA)
    out.append(b"\r\n")
    return b"".join(out)


def upgrade_response(headers: Headers) -> bytes:
    """The dyno's 101 Switching Protocols for the client: its fields minus the hop-by-hop ones,
    then the Upgrade it chose with Connection: Upgrade (both hop-by-hop, so re-stated)."""
    out = [STATUS_LINES[101][1]]
    upgrade = None
    known = _RESPONSE_ACTIONS.by_raw
    for name, value in headers:
        action = known.get(name)
        if action is None:
            action = _RESPONSE_ACTIONS.learn(name)
        if action == _PASS:
            out += (name, b": ", value, b"\r\n")
        elif name.lower() == b"upgrade":
            upgrade = value
    if upgrade is not None:
        out.append(b"Connection: Upgrade\r\nUpgrade: %s\r\n" % upgrade)
    out.append(VIA)
    out.append(b"\r\n")
    return b"".join(out)


def last_chunk(trailers: Headers) -> bytes:
    """The end of a chunked body, with its trailer fields (RFC 9112 §7.1.2)."""
    if not trailers:
        return b"0\r\n\r\n"
    return b"0\r\n" + b"".join([b"%s: %s\r\n" % field for field in trailers]) + b"\r\n"
