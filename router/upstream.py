"""The connection to a dyno: parses its responses and relays them to the client.

An `UpstreamConnection` is an asyncio `Protocol` over one TCP connection to one dyno, pooled
in that dyno's `DynoPool` between requests. While an exchange is attached, every `data_received`
feeds httptools; the callbacks collect the rewritten head and the (re-)framed body pieces, and
once the feed returns they go to the client in a single write. Nothing is buffered beyond one
read: a full client write buffer pauses reading from the dyno (back-pressure), see `flow.py`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from httptools import HttpParserCallbackError, HttpParserError, HttpResponseParser

from router import errors
from router.flow import PEER_BUFFER_FULL, ReadGate
from router.phases import RESPONDING
from router.headers import CHUNKED, CLOSE, NONE, last_chunk, rewrite_response

if TYPE_CHECKING:
    from router.exchange import Exchange
    from router.pool import DynoPool
    from router.server import Router

_CRLF = b"\r\n"


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        # per connection
        "pool", "router", "transport", "gate", "parser", "idle_since",
        # per exchange
        "exchange", "client_transport", "_headers", "_head_done", "_downstream",
        "_upstream", "_out", "_complete", "_reusable", "_got_bytes", "_stray",
    )

    def __init__(self, pool: DynoPool, router: Router) -> None:
        self.pool = pool
        self.router = router
        self.transport: asyncio.Transport | None = None
        self.gate: ReadGate | None = None
        self.parser = HttpResponseParser(self)
        self.idle_since = 0.0
        self.exchange: Exchange | None = None
        self.client_transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._reset()

    def _reset(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._downstream = NONE
        self._upstream = NONE
        self._complete = False
        self._reusable = False
        self._got_bytes = False
        self._stray = False

    # -- pool and exchange life cycle -------------------------------------------------------

    def attach(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.client_transport = exchange.client.transport

    def detach(self) -> None:
        self.exchange = None
        self.client_transport = None
        self.gate.resume(PEER_BUFFER_FULL)
        if self._stray or (self._head_done and not self._complete):
            # Bytes beyond the response, or a response cut short: this connection's framing
            # can no longer be trusted.
            self.close()
        self._reset()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

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
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError:
            raise  # a bug in the router's own callbacks, not the dyno's fault
        except HttpParserError:
            # A response the parser refuses (malformed head or framing): the client cannot be
            # given a reliable answer from this connection.
            self._out.clear()
            self.transport.close()
            self._stray = True
            exchange.fail(errors.BAD_RESPONSE)
            return
        out = self._out
        if out:
            self.client_transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if self._complete:
            if self._stray:
                self._reusable = False
            exchange.finish(self._reusable)

    def eof_received(self) -> bool:
        return False  # close our side too; an idle dyno connection half-closed is useless

    def connection_lost(self, exc: Exception | None) -> None:
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
        if status < 200:
            # Interim responses (100 Continue, 103 Early Hints) are not relayed; the final
            # response follows on this connection.
            self._headers = []
            return
        exchange = self.exchange
        fields, self._headers = self._headers, []  # what follows the head are trailers
        head, self._upstream, self._downstream, exchange.keep_alive = rewrite_response(
            status, fields, head_request=exchange.is_head, client_http11=exchange.http11,
            client_keep_alive=exchange.keep_alive)
        self._head_done = True
        self._out.append(head)
        exchange.phase = RESPONDING  # FORWARDING -> RESPONDING
        exchange.status = status
        if exchange.is_head:
            # The parser would wait for the Content-Length a HEAD response announces but never
            # sends (RFC 9110 §9.3.2); the response is complete here, and a fresh parser takes
            # the next one.
            self._reusable = self.parser.should_keep_alive()
            self._complete = True
            self.parser = HttpResponseParser(self)

    def on_body(self, data: bytes) -> None:
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
            self._out.append(last_chunk(self._headers))
        self._complete = True

    def _message_done(self) -> None:
        if self._downstream is CHUNKED:
            self._out.append(last_chunk(self._headers))
        self._complete = True

