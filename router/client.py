"""The connection from a client: parses its requests and starts an exchange for each.

A `ClientConnection` is an asyncio `Protocol` over one client TCP connection, kept alive across
requests (HTTP/1.1). httptools calls back as it parses: the head becomes an `Exchange` with the
rewritten upstream head; body pieces are (re-)framed into the exchange's pending list and leave
for the dyno in one write when the feed returns.

Requests are answered in order. A request that arrives while another is being answered
(pipelining, RFC 9112 §9.3.2) waits in `_queue` with reading paused, and starts when the one
before it is done.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import time as _wall_clock
from typing import TYPE_CHECKING

from httptools import (HttpParserCallbackError, HttpParserError, HttpParserUpgrade,
                       HttpRequestParser)

from router import errors
from router.errors import RouterError
from router.exchange import DONE, Exchange
from router.flow import PEER_BUFFER_FULL, PIPELINED, ReadGate
from router.headers import CHUNKED, RequestRewriter, last_chunk

if TYPE_CHECKING:
    from router.server import Router

_CRLF = b"\r\n"


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        # per connection
        "router", "rewriter", "parser", "transport", "gate", "peer", "write_paused", "_closing",
        "_queue",
        # per request being parsed
        "_url", "_headers", "_reading",
        # the request being answered
        "_serving",
    )

    def __init__(self, router: Router, rewriter: RequestRewriter) -> None:
        self.router = router
        self.rewriter = rewriter
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.gate: ReadGate | None = None
        self.peer = b""
        self.write_paused = False
        self._closing = False
        self._queue: deque[Exchange] = deque()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._reading: Exchange | None = None  # receiving its request body
        self._serving: Exchange | None = None  # being answered

    @property
    def serving(self) -> Exchange | None:
        """The exchange being answered on this connection, if any."""
        return self._serving

    # -- asyncio Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.gate = ReadGate(transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0].encode("ascii") if peer else b""
        self.router.clients.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            # The request went up without its Upgrade (a plain request); the bytes after it
            # belong to a protocol the router does not speak, so the connection ends after it.
            self._reading = None
            if self._serving is not None:
                self._serving.keep_alive = False
            self._closing = True
        except HttpParserCallbackError:
            raise  # a bug in the router's own callbacks, not the client's fault
        except HttpParserError:
            self._unparseable()
            return
        exchange = self._serving
        if exchange is not None and exchange.pending and exchange.upstream is not None:
            exchange.flush_request()

    def eof_received(self) -> bool:
        # Like nginx, a client that closes its side while its request is being answered is
        # taken to have gone away (H27, 499); returning False closes the transport.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.router.clients.discard(self)
        exchange, self._serving = self._serving, None
        if exchange is not None:
            exchange.client_lost()
        queue = self._queue
        while queue:
            queue.popleft().client_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        exchange = self._serving
        if exchange is not None and exchange.upstream is not None:
            exchange.upstream.gate.pause(PEER_BUFFER_FULL)

    def resume_writing(self) -> None:
        self.write_paused = False
        exchange = self._serving
        if exchange is not None and exchange.upstream is not None:
            exchange.upstream.gate.resume(PEER_BUFFER_FULL)

    # -- httptools callbacks ----------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Head fields, or after the head (a fresh list then) the trailer fields of a chunked
        # body; no branch here, it runs for every field.
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._closing:
            return
        parser = self.parser
        router = self.router
        wall = _wall_clock()
        method = parser.get_method()
        target = self._url
        fields, self._headers = self._headers, []  # what follows the head are trailers
        head, host, request_id, fwd, framing, connection_seen = self.rewriter.rewrite(
            method, target, fields, self.peer, int(wall * 1000))
        self._url = b""
        keep_alive = parser.should_keep_alive()
        if keep_alive and not connection_seen:
            http11 = True  # keep-alive without asking for it: only HTTP/1.1 does that
        else:
            http11 = parser.get_http_version() == "1.1"
            # HTTP/1.0 keep-alive is not offered: such clients get close-delimited answers.
            keep_alive = keep_alive and http11
        exchange = Exchange(self, router, method, target, head, host, request_id, fwd, framing,
                            keep_alive, http11, router.loop.time(), wall)
        self._reading = exchange
        if self._serving is None:
            self._serving = exchange
            exchange.dispatch()
        else:
            self._queue.append(exchange)
            self.gate.pause(PIPELINED)

    def on_body(self, data: bytes) -> None:
        exchange = self._reading
        if exchange is None or exchange.phase is DONE:
            return  # the exchange ended early (router answer, or the dyno answered already)
        if exchange.framing is CHUNKED:
            exchange.pending += (b"%x\r\n" % len(data), data, _CRLF)
        else:
            exchange.pending.append(data)

    def on_message_complete(self) -> None:
        exchange, self._reading = self._reading, None
        trailers = self._headers
        if trailers:
            self._headers = []
        if exchange is None or exchange.phase is DONE:
            return
        if exchange.framing is CHUNKED:
            exchange.pending.append(last_chunk(trailers))
        exchange.request_complete = True

    # -- what exchanges call back -----------------------------------------------------------

    def exchange_done(self, exchange: Exchange) -> None:
        """`exchange` was answered: start the next pipelined request, or close."""
        self.gate.resume(PEER_BUFFER_FULL)
        if not exchange.keep_alive or not exchange.request_complete or self._closing:
            self._close()
            return
        queue = self._queue
        if queue:
            following = self._serving = queue.popleft()
            if not queue:
                self.gate.resume(PIPELINED)
            following.dispatch()
        else:
            self._serving = None

    def router_answer(self, exchange: Exchange, error: RouterError) -> None:
        """Send the router's own page for `error`, log it, and close the connection."""
        if exchange.is_head:
            self.transport.write(error.head_response)
        else:
            self.transport.write(error.response)
            exchange.nbytes = error.body_length
        exchange.log_error(error, error.status)
        self._close()

    def response_interrupted(self, exchange: Exchange, error: RouterError) -> None:
        """The response broke off after its head went out: log it and cut the connection, so
        the client sees the truncation (a short body or a missing last chunk)."""
        exchange.log_error(error, exchange.status)
        self._close()

    # -- internals --------------------------------------------------------------------------

    def _close(self) -> None:
        """End the connection once the exchange being answered is done."""
        self._closing = True
        self._serving = None
        self._drop_queue()
        self.transport.close()

    def _drop_queue(self) -> None:
        queue = self._queue
        while queue:
            queue.popleft().client_lost()  # never dispatched: nothing to release or log

    def _unparseable(self) -> None:
        """The client broke HTTP (RFC 9112): answer 400 and close, after any request before."""
        error = errors.BAD_REQUEST
        reading, serving = self._reading, self._serving
        self._reading = None
        if reading is not None and reading is serving and reading.phase is not DONE:
            reading.fail(error)  # its body broke off mid-way: 400, or cut the response
            self._closing = True
            return
        router = self.router
        router.log.router_error(None, _wall_clock(), error.code, error.desc, error.level, b"",
                                b"", None, router.request_ids.next(), self.peer, None, None,
                                None, error.status, error.body_length)
        router.metrics.count_unrouted(error.status)
        if serving is None or serving.phase is DONE:
            self.transport.write(error.response)
            self._close()
        else:
            # Let the request before the garbage be answered, then close (exchange_done).
            serving.keep_alive = False
            self._closing = True
            self._drop_queue()
