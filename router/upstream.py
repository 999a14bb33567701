"""The connection to a dyno: parses its responses and relays them to the client.

An `UpstreamConnection` is an asyncio `Protocol` over one TCP connection to one dyno, pooled
in that dyno's `DynoPool` between requests. While an exchange is attached, every `data_received`
feeds httptools; the callbacks collect the rewritten head and the (re-)framed body pieces, and
once the feed returns they go to the client in a single write. Nothing is buffered beyond one
read: a full client write buffer pauses reading from the dyno (back-pressure), see `flow.py`.

Interim responses (1xx) are relayed to HTTP/1.1 clients and dropped for HTTP/1.0 ones; a 101
to an upgrade request hands both connections to a tunnel (tunnel.py). A response the parser
refuses is H17; one past the size limits (limits.py) is H25.

How far the response has come is one state (AWAITING, HEAD, BODY, ENDED, REUSABLE; the table is
in states.py), changed only through `_to`. The exchange's state is the exchange's: this
connection tells it what happened (`response_began`, `relaying`, `finish`, `fail`, ...), and it
reads the body bytes relayed so far from `relayed`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from httptools import (HttpParserCallbackError, HttpParserError, HttpParserUpgrade,
                       HttpResponseParser)

from router import errors
from router.errors import ResponseRejected
from router.flow import PEER_BUFFER_FULL, ReadGate
from router.headers import (CHUNKED, CLOSE, NONE, UPGRADE, interim_response, last_chunk,
                            rewrite_response, upgrade_response)
from router.limits import GrowthGuard, allowed_trailers, check_response_head
from router.states import (AWAITING, BODY, ENDED, HEAD, RESPONDING, RESPONSE_ALLOWED,
                           REUSABLE, ResponseState, refused)

if TYPE_CHECKING:
    from router.exchange import Exchange
    from router.pool import DynoPool
    from router.server import Router

_CRLF = b"\r\n"
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
# Logged with a response after which the dyno sent bytes that belong to no response (the
# client's answer is complete; the dyno connection is closed, not pooled).
STRAY_NOTE = b" dyno_connection=closed"


class UpstreamConnection:
    # asyncio's Protocol interface, not its subclass (see ClientConnection).
    __slots__ = (
        # per connection
        "pool", "router", "transport", "gate", "parser", "idle_since", "on_status", "_reason",
        "_head_check", "_guard",
        # per exchange (`_head`: the head made for the client, so that a failure can tell
        # whether it went out already; `_stray`: bytes came that belong to no response, or the
        # response was refused: the connection's framing is not to be trusted again)
        "exchange", "client_transport", "_headers", "_state", "_head", "_downstream",
        "_upstream", "_out", "_stray", "_unparsed", "_switching", "relayed",
    )

    def __init__(self, pool: DynoPool, router: Router) -> None:
        self.pool = pool
        self.router = router
        self.transport: asyncio.Transport | None = None
        self.gate: ReadGate | None = None
        # The reason phrase's pieces, relayed as they are (a bound list.append is the cheapest
        # callback httptools can make; cleared at each head).
        self._reason: list[bytes] = []
        self.on_status = self._reason.append
        self.parser = HttpResponseParser(self)
        self.idle_since = 0.0
        self._head_check = router.config.limits.response_head_check
        self._guard: GrowthGuard | None = None
        self.exchange: Exchange | None = None
        self.client_transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._state = AWAITING  # states.py
        self._head = b""
        self._downstream = NONE
        self._upstream = NONE
        self._stray = False
        self._unparsed = 0  # bytes of a head (or trailers) not yet complete: limits.py
        self._switching: bytes | None = None  # the 101 head for the client, once it came
        self.relayed = 0  # body bytes of the response relayed to the client (its log line)

    def _to(self, state: int) -> None:
        """Every change of the response's state goes through here (states.py's table)."""
        if not RESPONSE_ALLOWED[self._state][state]:
            raise refused(ResponseState, self._state, state)
        self._state = state

    # -- pool and exchange life cycle -------------------------------------------------------

    def attach(self, exchange: Exchange, client_transport: asyncio.Transport) -> None:
        """Serve `exchange`: its response goes to `client_transport`."""
        self.exchange = exchange
        self.client_transport = client_transport

    def detach(self) -> None:
        self.exchange = None
        self.client_transport = None
        gate = self.gate
        if gate.reasons:
            gate.resume(PEER_BUFFER_FULL)
        if self._stray or self._state == BODY:
            # Bytes beyond the response, or a response cut short: this connection's framing
            # can no longer be trusted.
            self.close()
        # What __init__ sets per exchange. The head's fields were handed over with a fresh
        # list already; only trailers leave it non-empty.
        if self._headers:
            self._headers = []
        self._to(AWAITING)
        self._head = b""
        self._stray = False
        self._downstream = self._upstream = NONE
        self._unparsed = self.relayed = 0
        self._switching = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def handed_over(self) -> None:
        """The connection became one end of a tunnel (tunnel.py): HTTP is over on it."""
        self.exchange = None
        self.client_transport = None

    # -- asyncio Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.gate = ReadGate(transport)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            # An idle pooled connection must stay silent; bytes now would be misframed later.
            self.pool.forget(self)
            self.transport.close()
            return
        state = self._state
        if state <= HEAD:
            if state == AWAITING:
                self._to(HEAD)  # the response's first bytes
            self._unparsed += len(data)
        elif self._upstream is CHUNKED:
            self._unparsed += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as switch:
            self._switched(exchange, data[switch.args[0]:])
            return
        except HttpParserCallbackError as error:
            rejected = error.__context__
            if not isinstance(rejected, ResponseRejected):
                raise  # a bug in the router's own callbacks, not the dyno's fault
            self._refuse(exchange, rejected.error)
            return
        except HttpParserError:
            # A response the parser refuses (malformed head or framing): the client cannot be
            # given a reliable answer from this connection. Unless the response was complete
            # already and what broke came after it (a body sent with a 204, say).
            self._refuse(exchange, errors.BAD_RESPONSE)
            return
        if self._unparsed > self._head_check and self._growing(exchange):
            return
        out = self._out
        if out:
            self.client_transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if self._state >= ENDED:
            if self._stray:
                exchange.finish(False, STRAY_NOTE)  # relayed; this connection is closed
            else:
                exchange.finish(self._state == REUSABLE)
        else:
            exchange.relaying()  # the response started (or goes on)

    def eof_received(self) -> bool:
        return False  # close our side too; an idle dyno connection half-closed is useless

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._lost()
        finally:
            # As in ClientConnection.connection_lost: no cycle through the parser.
            self.parser = None

    def _lost(self) -> None:
        exchange = self.exchange
        if exchange is None:
            self.pool.forget(self)
            return
        if self._state == BODY and self._upstream is CLOSE:
            # RFC 9112 §6.3: a body without length ends when the connection closes.
            self._message_done()
            out = self._out
            if out:
                self.client_transport.write(b"".join(out))
                out.clear()
            exchange.finish(False)
            return
        got_bytes = self._state != AWAITING
        self.exchange = None
        self.client_transport = None
        exchange.upstream_lost(self, got_bytes)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.peer_buffer_full(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.peer_buffer_full(False)

    # -- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        # Head fields, or after the head (a fresh list then) the trailer fields of a chunked
        # body; no branch here, it runs for every field.
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        pieces = self._reason
        if self._unparsed > self._head_check:  # a large head: check it field by field
            check_response_head(sum(map(len, pieces)), self._headers,
                                self.router.config.limits)
        if status < 200 or self._state >= BODY:
            self._interim(status)  # or a second response nobody asked for
            return
        exchange = self.exchange
        fields, self._headers = self._headers, []  # what follows the head are trailers
        # Positional arguments: a call with keywords costs more, and this runs per response.
        # An answer that comes before the whole request was sent ends the client connection
        # (the rest of the upload is not forwarded): it says so.
        # The reason phrase goes as the dyno sent it (llhttp gives no piece for "HTTP/1.1 200").
        head, self._upstream, self._downstream, keep_alive = rewrite_response(
            status, fields, exchange.is_head, exchange.http11,
            exchange.keep_alive and exchange.request_complete, pieces)
        pieces.clear()
        if exchange.backend.affinity is not None:  # the app has session affinity
            head = exchange.affinity_cookie(head)
        self._to(BODY)
        self._head = head
        self._unparsed = 0
        self._out.append(head)
        exchange.response_began(status, keep_alive)
        if self._downstream is NONE:
            self._bodiless(exchange, status, fields)

    def on_body(self, data: bytes) -> None:
        self._unparsed = 0  # progress: nothing is held for a chunked body's framing
        if self._state != BODY:
            self._stray = True  # body bytes after a HEAD response, or of an interim response
            return
        self.relayed += len(data)
        if self._downstream is CHUNKED:
            self._out += (b"%x\r\n" % len(data), data, _CRLF)
        else:
            self._out.append(data)

    def on_message_complete(self) -> None:
        state = self._state
        if state != BODY:
            if state > BODY:
                self._stray = True  # a second response nobody asked for
            return  # (else an interim response ended)
        if self._downstream is CHUNKED:
            trailers = self._headers
            self._out.append(last_chunk(allowed_trailers(trailers) if trailers else trailers))
        self._to(REUSABLE if self.parser.should_keep_alive() else ENDED)

    def _bodiless(self, exchange: Exchange, status: int, fields) -> None:
        """A response without a body: to HEAD, or a 204 or 304 (RFC 9110 §6.4.1)."""
        if exchange.is_head:
            # The parser would wait for the Content-Length a HEAD response announces but never
            # sends (RFC 9110 §9.3.2); the response is complete here, and a fresh parser takes
            # the next one.
            self._to(REUSABLE if self.parser.should_keep_alive() else ENDED)
            self.parser = HttpResponseParser(self)
        elif status == 204 and any(name.lower() in _FRAMING for name, _ in fields):
            # A 204 may not announce a body (RFC 9110 §15.3.5, RFC 9112 §6.1); one that does
            # may well send it, and those bytes would pass for the next response: the client
            # gets the 204, and this connection is not used again.
            self._stray = True

    def _message_done(self) -> None:
        if self._downstream is CHUNKED:
            self._out.append(last_chunk(allowed_trailers(self._headers)))
        self._to(ENDED)

    # -- the rarer paths --------------------------------------------------------------------

    def _interim(self, status: int) -> None:
        """A 1xx response: relayed to HTTP/1.1 clients (RFC 9110 §15.2), dropped for 1.0 ones;
        a 101 is remembered until the parser confirms the switch. Or the head of a second
        response after a complete one (the dyno sent a body with a 204 or 304, or a response
        nobody asked for): dropped, and this connection is closed once the client has its."""
        pieces = self._reason
        reason = b"".join(pieces) if pieces else None
        pieces.clear()
        fields, self._headers = self._headers, []
        if self._state >= BODY:
            self._stray = True
            return
        exchange = self.exchange
        self._unparsed = self._head_check + 1  # check the final head exactly (rare anyway)
        if status == 101:
            if not exchange.flags & UPGRADE or not exchange.request_complete:
                # A switch nobody asked for, or before the request's body was all sent.
                raise ResponseRejected(errors.BAD_RESPONSE)
            self._switching = upgrade_response(fields)
            if exchange.backend.affinity is not None:  # a WebSocket's handshake pins too
                self._switching = exchange.affinity_cookie(self._switching)
            return
        head = interim_response(status, fields, reason)  # refuses a status below 100
        if exchange.http11:
            self._out.append(head)

    def _switched(self, exchange: Exchange, from_dyno: bytes) -> None:
        """The parser stopped after a 101 with Upgrade: the protocols switch (tunnel.py)."""
        head, self._switching = self._switching, None
        if head is None:
            self._refuse(exchange, errors.BAD_RESPONSE)  # not an answer to an upgrade request
            return
        out = self._out
        out.append(head)
        self.client_transport.write(b"".join(out))
        out.clear()
        exchange.upgraded(self, from_dyno)

    def _refuse(self, exchange: Exchange, error) -> None:
        """The response cannot be relayed (H17, H25): close this connection, answer or cut.

        What broke may come after a complete response (bytes after a 204, a second response):
        the client still gets that one. A response cut short (an invalid trailer section, bad
        chunk framing) goes out as far as it was relayed, never with its last chunk, and the
        client connection is closed, so that the client sees an incomplete message; if nothing
        of it was sent yet, the client gets a 502 instead."""
        out = self._out
        self.transport.close()
        self._stray = True
        if self._state >= ENDED:
            if out:
                self.client_transport.write(b"".join(out))
                out.clear()
            exchange.finish(False, STRAY_NOTE)
            return
        if self._state == BODY and exchange.phase == RESPONDING:
            head = self._head
            if any(piece is head for piece in out):
                self.relayed = 0
                exchange.head_withheld()  # its head never left: a page can still go
            elif out:
                self.client_transport.write(b"".join(out))
        out.clear()
        exchange.fail(error)

    def _growing(self, exchange: Exchange) -> bool:
        """An incomplete head or trailer section keeps growing: bound what the parser holds.
        -> True if the response was refused (H25)."""
        guard = self._guard
        if guard is None:
            limits = self.router.config.limits
            guard = self._guard = GrowthGuard(limits.response_header_line,
                                              limits.response_status_line, limits.headers)
        first_line = 0 if self._state >= BODY else sum(map(len, self._reason))
        if guard.check(self._unparsed, self._headers, first_line) == GrowthGuard.OK:
            return False
        self._refuse(exchange, errors.RESPONSE_TOO_LARGE)
        return True
