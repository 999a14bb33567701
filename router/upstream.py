"""The connection to a dyno: parses its responses and relays them to the client.

An `UpstreamConnection` is an asyncio `Protocol` over one TCP connection to one dyno, pooled
in that dyno's `DynoPool` between requests. While an exchange is attached, every `data_received`
feeds httptools; the callbacks collect the rewritten head and the (re-)framed body pieces, and
once the feed returns they go to the client in a single write. Nothing is buffered beyond one
read: a full client write buffer pauses reading from the dyno (back-pressure), see `flow.py`.

Interim responses (1xx) are relayed to HTTP/1.1 clients and dropped for HTTP/1.0 ones; a 101
to an upgrade request hands both connections to a tunnel (tunnel.py). A response the parser
refuses is H17; one past the size limits (limits.py) is H25.
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
from router.phases import FORWARDING, RESPONDING

if TYPE_CHECKING:
    from router.exchange import Exchange
    from router.pool import DynoPool
    from router.server import Router

_CRLF = b"\r\n"
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
# Logged with a response after which the dyno sent bytes that belong to no response (the
# client's answer is complete; the dyno connection is closed, not pooled).
STRAY_NOTE = b" dyno_connection=closed"


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        # per connection
        "pool", "router", "transport", "gate", "parser", "idle_since", "on_status", "_reason",
        "_head_check", "_guard",
        # per exchange (`_head_done` is the head for the client once it was made, so that a
        # failure can tell whether it went out already)
        "exchange", "client_transport", "_headers", "_head_done", "_downstream",
        "_upstream", "_out", "_complete", "_reusable", "_got_bytes", "_stray", "_unparsed",
        "_switching",
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
        self._reset()

    def _reset(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done: bytes | bool = False
        self._downstream = NONE
        self._upstream = NONE
        self._complete = False
        self._reusable = False
        self._got_bytes = False
        self._stray = False
        self._unparsed = 0  # bytes of a head (or trailers) not yet complete: limits.py
        self._switching: bytes | None = None  # the 101 head for the client, once it came

    # -- pool and exchange life cycle -------------------------------------------------------

    def detach(self) -> None:
        self.exchange = None
        self.client_transport = None
        gate = self.gate
        if gate.reasons:
            gate.resume(PEER_BUFFER_FULL)
        if self._stray or (self._head_done and not self._complete):
            # Bytes beyond the response, or a response cut short: this connection's framing
            # can no longer be trusted.
            self.close()
        # As _reset(), inlined: this runs once per request. The head's fields were handed
        # over with a fresh list already; only trailers leave it non-empty.
        if self._headers:
            self._headers = []
        self._head_done = self._complete = self._reusable = self._got_bytes = False
        self._stray = False
        self._downstream = self._upstream = NONE
        self._unparsed = 0
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
        self._got_bytes = True
        if not self._head_done or self._upstream is CHUNKED:
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
        if self._complete:
            if self._stray:
                exchange.finish(False, STRAY_NOTE)  # relayed; this connection is closed
            else:
                exchange.finish(self._reusable)
        else:
            # The response started (or goes on): the rolling idle timeout runs (H15/H28).
            router = self.router
            exchange.client.deadline = router.now + router.idle_timeout

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
        if self._head_done and self._upstream is CLOSE and not self._complete:
            # RFC 9112 §6.3: a body without length ends when the connection closes.
            self._message_done()
            out = self._out
            if out:
                self.client_transport.write(b"".join(out))
                out.clear()
            exchange.finish(False)
            return
        got_bytes = self._got_bytes
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
        if status < 200 or self._head_done:
            self._interim(status)  # or a second response nobody asked for
            return
        exchange = self.exchange
        fields, self._headers = self._headers, []  # what follows the head are trailers
        # Positional arguments: a call with keywords costs more, and this runs per response.
        # An answer that comes before the whole request was sent ends the client connection
        # (the rest of the upload is not forwarded): it says so.
        # The reason phrase goes as the dyno sent it (llhttp gives no piece for "HTTP/1.1 200").
        head, self._upstream, self._downstream, exchange.keep_alive = rewrite_response(
            status, fields, exchange.is_head, exchange.http11,
            exchange.keep_alive and exchange.request_complete, pieces)
        pieces.clear()
        self._head_done = head
        self._unparsed = 0
        self._out.append(head)
        exchange.phase = RESPONDING  # FORWARDING -> RESPONDING
        exchange.status = status
        if self._downstream is NONE:
            self._bodiless(exchange, status, fields)

    def on_body(self, data: bytes) -> None:
        self._unparsed = 0  # progress: nothing is held for a chunked body's framing
        if self._complete or not self._head_done:
            self._stray = True  # body bytes after a HEAD response, or of an interim response
            return
        self.exchange.nbytes += len(data)
        if self._downstream is CHUNKED:
            self._out += (b"%x\r\n" % len(data), data, _CRLF)
        else:
            self._out.append(data)

    def on_message_complete(self) -> None:
        if not self._head_done:
            return  # an interim response ended
        if self._complete:
            self._stray = True  # a second response nobody asked for
            return
        self._reusable = self.parser.should_keep_alive()
        if self._downstream is CHUNKED:
            trailers = self._headers
            self._out.append(last_chunk(allowed_trailers(trailers) if trailers else trailers))
        self._complete = True

    def _bodiless(self, exchange: Exchange, status: int, fields) -> None:
        """A response without a body: to HEAD, or a 204 or 304 (RFC 9110 §6.4.1)."""
        if exchange.is_head:
            # The parser would wait for the Content-Length a HEAD response announces but never
            # sends (RFC 9110 §9.3.2); the response is complete here, and a fresh parser takes
            # the next one.
            self._reusable = self.parser.should_keep_alive()
            self._complete = True
            self.parser = HttpResponseParser(self)
        elif status == 204 and any(name.lower() in _FRAMING for name, _ in fields):
            # A 204 may not announce a body (RFC 9110 §15.3.5, RFC 9112 §6.1); one that does
            # may well send it, and those bytes would pass for the next response: the client
            # gets the 204, and this connection is not used again.
            self._stray = True

    def _message_done(self) -> None:
        if self._downstream is CHUNKED:
            self._out.append(last_chunk(allowed_trailers(self._headers)))
        self._complete = True

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
        if self._head_done:
            self._stray = True
            return
        exchange = self.exchange
        self._unparsed = self._head_check + 1  # check the final head exactly (rare anyway)
        if status == 101:
            if not exchange.flags & UPGRADE or not exchange.request_complete:
                # A switch nobody asked for, or before the request's body was all sent.
                raise ResponseRejected(errors.BAD_RESPONSE)
            self._switching = upgrade_response(fields)
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
        exchange.status = 101
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
        if self._complete:
            if out:
                self.client_transport.write(b"".join(out))
                out.clear()
            exchange.finish(False, STRAY_NOTE)
            return
        head = self._head_done
        if head and exchange.phase is RESPONDING:
            if any(piece is head for piece in out):
                exchange.phase = FORWARDING  # its head never left: a page can still go
                exchange.nbytes = 0
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
        first_line = 0 if self._head_done else sum(map(len, self._reason))
        if guard.check(self._unparsed, self._headers, first_line) == GrowthGuard.OK:
            return False
        self._refuse(exchange, errors.RESPONSE_TOO_LARGE)
        return True
