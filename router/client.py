"""The connection from a client: parses its requests and starts an exchange for each.

A `ClientConnection` is an asyncio `Protocol` over one client TCP connection, kept alive across
requests (HTTP/1.1). httptools calls back as it parses: the head becomes an `Exchange` with the
rewritten upstream head; body pieces are (re-)framed into the exchange's pending list and leave
for the dyno in one write when the feed returns.

Requests are answered in order. A request that arrives while another is being answered
(pipelining, RFC 9112 §9.3.2) waits in `_queue` with reading paused, and starts when the one
before it is done.

The connection's state (OPEN, REFUSING, LINGERING, CLOSING, TUNNEL) is one int whose changes
go through `_to`, checked against the table in `states.py`. The state of the request being
answered is its `Exchange`'s: the connection tells it what it parsed (`request_body`,
`request_ended`) and never sets its attributes.

Timeouts: the connection has one `deadline` (loop time) that the data path moves
(`move_deadline`), and the router's periodic sweep calls `expire` once it has passed
(timers.py). What the deadline means depends on the moment: the head timeout while no request
is being answered, otherwise the exchange's (connect, boot queue, request, idle).

Bad input: what httptools refuses becomes a 400; what it accepts but the router must refuse is
checked in `limits.py` and `headers.py`, which raise `RequestRejected` from inside a parser
callback; httptools hands it back wrapped, and `_reject` answers it.

The request line: llhttp accepts extra spaces in it, and gives no positions, so the connection
keeps a reference to the bytes the current request line is in: `_line` when the request begins
at their start (the read it began in, and the following ones while its head is incomplete),
else `_mid` (the request began after another message in the same read, `_line` is empty).
`_marks` (emptied by httptools' on_message_begin, a C-level callback, and refilled when a head
completes) says whether a head is in progress. On the usual path the check is two indexes:
the line's LF and the version's "H" sit where single spaces put them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import time as _wall_clock
from typing import TYPE_CHECKING

from httptools import (HttpParserCallbackError, HttpParserError, HttpParserUpgrade,
                       HttpRequestParser)

from router import errors
from router.downstream import Downstream
from router.errors import RequestRejected, RouterError
from router.exchange import Exchange
from router.flow import PEER_BUFFER_FULL, PIPELINED, UPGRADING, ReadGate
from router.headers import CHUNKED, UPGRADE, RequestRewriter, unusual_request_head
from router.limits import (GrowthGuard, check_request_head, check_trailers, exact_request_line,
                           origin_form)
from router.standins import RepeatedLength, UpgradeBody
from router.states import (CLIENT_ALLOWED, CLOSING, DONE, LINGERING, OPEN, REFUSING,
                           TUNNEL, ClientState, refused)

if TYPE_CHECKING:
    from router.listener import Listener
    from router.server import Router

_CONNECT = b"CONNECT"
_SLASH = ord("/")  # an origin-form target's first byte (an int: no slice to make per request)
_HASH = ord("#")  # a fragment's start (an int needle: `in` goes straight to memchr)
# A lingering close reads (and drops) what the client still sends until it has been quiet this
# long, for this long at most (nginx's lingering_timeout and lingering_time).
_LINGER = 5.0
_LINGER_TOTAL = 30.0


class ClientConnection(Downstream):
    # asyncio's Protocol interface, not its subclass: compiled, this is an extension type
    # (client.pxd), which cannot derive from a Python class. What an exchange sees of it is
    # the `Downstream` (downstream.py: transport, gate, write_paused, deadline, log).
    __slots__ = (
        # per connection
        "router", "listener", "rewriter", "parser", "peer", "_state",
        "_queue", "_head_check", "_guard", "_early", "_error_after", "_linger_end",
        "_upgrade_body",
        # what the parser holds: bytes of an incomplete head or trailer section (limits.py)
        "_unparsed", "_read_size", "_head_start",
        # per request being parsed
        "on_url", "_url", "_headers", "_reading", "on_message_begin", "_marks", "_line", "_mid",
        # the request being answered
        "_serving",
    )

    def __init__(self, router: Router, listener: Listener | None = None) -> None:
        self.router = router
        # The listener it came in on (plain or TLS, router/listener.py): its scheme and port
        # for X-Forwarded-Proto/-Port and its access log (protocol=http or https). None: the
        # router's plain listener, looked up when the connection is made.
        self.listener = listener
        self.log = router.log if listener is None else listener.log
        self.rewriter: RequestRewriter | None = None  # chosen by the peer, connection_made
        # The request target's pieces as httptools delivers them: a bound list.append is the
        # cheapest callback it can make (no Python frame). Set before the parser looks for it.
        self._url: list[bytes] = []
        self.on_url = self._url.append
        # Non-empty while no request head is in progress (see the module's docstring).
        self._marks: list[bool] = [True]
        self.on_message_begin = self._marks.clear
        self._line: bytes | bytearray = b""
        self._mid: bytes | bytearray = b""
        self.parser = HttpRequestParser(self)
        # RFC 9112 §6.3: with both Content-Length and chunked, chunked wins (and the
        # connection closes after the response); without this llhttp refuses such requests.
        self.parser.set_dangerous_leniencies(lenient_chunked_length=True)
        self.transport: asyncio.Transport | None = None
        self.gate: ReadGate | None = None
        self.peer = b""
        self.write_paused = False
        self._state = OPEN  # states.py
        self._queue: deque[Exchange] = deque()
        self.deadline = router.now + router.header_timeout
        self._head_check = router.config.limits.request_head_check
        self._guard: GrowthGuard | None = None  # made when a head first grows large
        self._early = b""  # bytes after an upgrade request, for the tunnel
        self._upgrade_body = 0  # the Content-Length of an upgrade request being parsed
        self._error_after: RouterError | None = None  # to send once the requests before it are
        self._linger_end = 0.0  # when lingering, the latest moment to close
        self._unparsed = 0
        self._read_size = 0
        self._head_start = 0  # `_unparsed` when the last message ended: more means a new head
        self._headers: list[tuple[bytes, bytes]] = []
        self._reading: Exchange | None = None  # receiving its request body
        self._serving: Exchange | None = None  # being answered

    @property
    def serving(self) -> Exchange | None:
        """The exchange being answered on this connection, if any."""
        return self._serving

    # -- asyncio Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport, peer: bytes | None = None) -> None:
        """`peer`: the client's address when a PROXY protocol header named it; trust is
        decided by the connection's own peer (the balancer)."""
        self.transport = transport
        self.gate = ReadGate(transport)
        address = transport.get_extra_info("peername")
        connected = address[0].encode("ascii") if address else b""
        self.peer = connected if peer is None else peer
        router = self.router
        listener = self.listener
        if listener is None:
            listener = self.listener = router.plain
        self.log = listener.log
        self.rewriter = listener.rewriter_for(connected)
        router.clients.add(self)

    def data_received(self, data: bytes) -> None:
        if self._state:  # not OPEN: nothing more is parsed
            if self._state == LINGERING:  # drop it, and wait a little longer
                self.deadline = min(self.router.now + _LINGER, self._linger_end)
            return
        n = self._read_size = len(data)
        reading = self._reading
        if reading is None:
            self._unparsed += n  # a head: what httptools may be holding (limits.py)
            if self._marks:  # at a message boundary: a request begins at data's start
                self._line = self._mid = data
            else:
                self._head_continues(data)
        else:
            # A request that begins in this read begins after the end of this body.
            self._line = b""
            self._mid = data
            router = self.router
            self.deadline = router.now + router.idle_timeout  # body bytes: rolling idle
            if reading.framing is CHUNKED:
                self._unparsed += n  # chunk lines and trailers are held too
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            if self._upgrade_body:
                self._upgrade_body_follows(data[upgrade.args[0]:])
            else:
                self._upgrade_requested(data[upgrade.args[0]:])
        except HttpParserCallbackError as error:
            rejected = error.__context__
            if not isinstance(rejected, RequestRejected):
                raise  # a bug in the router's own callbacks, not the client's fault
            self._reject(rejected.error)
        except HttpParserError as error:
            if str(error) == "Duplicate Content-Length" and self._line and not self._marks:
                # RFC 9112 §6.3: repeated Content-Length fields of one value count as one;
                # llhttp refuses them, so the head is parsed again without the repeats.
                self.parser = RepeatedLength(self)
                self.parser.feed_data(b"")
                return
            # llhttp knows HTTP/0.9 to 2.0 only; any other version is one the router does
            # not speak (RFC 9110 §15.6.6).
            self._reject(errors.VERSION_NOT_SUPPORTED if "HTTP version" in str(error)
                         else errors.BAD_REQUEST)
        else:
            if self._unparsed > self._head_check and self._growing():
                return
        # What was parsed before any error still goes: it belongs to a request in progress.
        exchange = self._serving
        if exchange is not None and exchange.pending and exchange.upstream is not None:
            exchange.flush_request()

    def eof_received(self) -> bool:
        # Like nginx, a client that closes its side while its request is being answered is
        # taken to have gone away (H27, 499); returning False closes the transport.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._to(CLOSING)
        router = self.router
        router.clients.discard(self)
        exchange, self._serving = self._serving, None
        if exchange is not None:
            exchange.client_lost()
        queue = self._queue
        while queue:
            queue.popleft().client_lost()
        if router.draining is not None:
            router.check_drained()
        # The parser holds this connection's bound methods: without the cycle, reference
        # counting frees the connection now, even if a table freeze (tableload.py) moved it
        # out of the collector's reach while it was open.
        self.parser = None

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

    def on_header(self, name: bytes, value: bytes) -> None:
        # Head fields, or after the head (a fresh list then) the trailer fields of a chunked
        # body; no branch here, it runs for every field.
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._marks.append(True)  # the head is complete
        if self._state:  # not OPEN
            return
        parser = self.parser
        router = self.router
        wall = _wall_clock()
        method = parser.get_method()
        pieces = self._url
        target = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        fields, self._headers = self._headers, []  # what follows the head are trailers
        if self._unparsed > self._head_check:  # a large head: check it field by field
            check_request_head(method, target, fields, router.config.limits)
        # RFC 9112 §3: "method SP target SP version CRLF", one space each. With the request
        # at the start of `_line`, its LF and the "H" of "HTTP/" are exactly there only with
        # single spaces (llhttp took the rest apart; it also takes "RTSP/" and "ICE/").
        line = self._line
        end = len(method) + len(target) + 11  # "M T HTTP/1.1\r" before the LF
        try:
            if line[end] != 10 or line[end - 9] != 72:
                self._check_request_line(method, target)
        except IndexError:  # `_line` is empty (see `_mid`), or shorter than that
            self._check_request_line(method, target)
        # The rest of this read may start the next head: count it (conservatively) as such.
        self._unparsed = self._head_start = self._read_size
        if _HASH in target:
            target = target[:target.index(b"#")]  # RFC 9110 §4.2.5: a fragment is not sent
        if not target or target[0] != _SLASH or method == _CONNECT:
            target, fields = origin_form(method, target, fields)
        head, host, request_id, fwd, framing, flags = self.rewriter.rewrite(
            method, target, fields, self.peer, int(wall * 1000))
        keep_alive = parser.should_keep_alive()
        if keep_alive and not flags:
            http11 = True  # keep-alive without asking for it: only HTTP/1.1 does that
        else:
            parser = self.parser
            keep_alive, http11, flags, self._upgrade_body = unusual_request_head(
                parser.get_http_version(), parser.should_upgrade(), keep_alive, flags, framing,
                fields)
        start = router.now = router.loop.time()  # keeps the coarse clock fresh under load
        exchange = Exchange(self, router, method, target, head, host, request_id, fwd, framing,
                            keep_alive, http11, start, wall, flags)
        self._reading = exchange
        if self._serving is None:
            self._serving = exchange
            exchange.dispatch()
        else:
            self._queue.append(exchange)
            self.gate.pause(PIPELINED)

    def on_body(self, data: bytes) -> None:
        self._unparsed = 0  # progress: nothing is held for a chunked body's framing
        exchange = self._reading
        if exchange is not None:
            exchange.request_body(data)

    def on_message_complete(self) -> None:
        self._line = b""  # a request that begins later in this read begins mid-way
        exchange = self._reading
        if exchange is None or exchange.request_complete:
            self._reading = None
            return  # no body (complete from the start)
        if self._upgrade_body:
            return  # llhttp skipped an upgrade request's body: standins.UpgradeBody reads it
        self._unparsed = self._head_start = self._read_size  # as in on_headers_complete
        trailers = self._headers
        if trailers:
            self._headers = []
            check_trailers(trailers, self.router.config.limits)  # may refuse the request
        self._reading = None
        exchange.request_ended(trailers)

    # -- what exchanges call back -----------------------------------------------------------

    def exchange_done(self, exchange: Exchange) -> None:
        """`exchange` was answered: start the next pipelined request, or close."""
        gate = self.gate
        if gate.reasons:
            gate.resume(PEER_BUFFER_FULL)
        if not exchange.keep_alive or not exchange.request_complete:
            self._linger()  # the client may have sent (or be sending) more than this request
            return
        queue = self._queue
        if queue:
            following = self._serving = queue.popleft()
            if not queue:
                self.gate.resume(PIPELINED)
            following.dispatch()
            return
        if self._state == REFUSING:
            self._after_last()
            return
        self._serving = None
        router = self.router
        self.deadline = router.now + router.header_timeout
        if exchange.flags & UPGRADE:
            self._upgrade_declined()

    def router_answer(self, exchange: Exchange, error: RouterError) -> None:
        """Send the router's own page for `error`, log it, and close the connection."""
        if exchange.is_head:
            self.transport.write(error.head_response)
        else:
            self.transport.write(error.response)
        exchange.log_error(error, error.status)
        self._linger()

    def response_interrupted(self, exchange: Exchange, error: RouterError) -> None:
        """The response broke off after its head went out: log it and cut the connection, so
        the client sees the truncation (a short body or a missing last chunk)."""
        exchange.log_error(error, exchange.status)
        if exchange.http11:
            self._close()
        else:
            # An HTTP/1.0 client's body may be delimited by the close itself: only a reset
            # shows it was cut short.
            self._to(CLOSING)
            self._serving = None
            self._drop_queue()
            self.transport.abort()

    def handed_over(self) -> None:
        """The connection became one end of a tunnel (tunnel.py): HTTP is over on it."""
        self._to(TUNNEL)
        self._serving = None
        self.router.clients.discard(self)

    def take_early_data(self) -> bytes:
        """The bytes the client sent after its upgrade request, for the tunnel."""
        early, self._early = self._early, b""
        return early

    # -- timeouts and draining (the sweep calls these) --------------------------------------

    def expire(self, now: float) -> None:
        """The deadline passed: the head timeout, or the exchange's."""
        if self._state:  # not OPEN: the end of a lingering close, or of a refused request
            self.transport.close()  # the end of a lingering close
            return
        exchange = self._serving
        if exchange is not None:
            exchange.expire(now)
            return
        self.deadline = float("inf")
        if self._head_begun():
            self._answer_unrouted(errors.HEAD_TIMEOUT)  # a head began but did not finish
        else:
            self._close()  # an idle keep-alive connection: closed without a word

    def drain(self) -> None:
        """The router is stopping: finish what is being answered, then close."""
        if self._serving is not None:
            self._serving.stop_keeping_alive()
        elif not self._head_begun():
            self._close()

    def idle(self) -> bool:
        """No request being answered or arriving (the drain closes such connections)."""
        return self._serving is None and not self._head_begun() and self._state == OPEN

    def _head_begun(self) -> bool:
        """Bytes of a next request arrived since the last one ended."""
        return self._unparsed != self._head_start or bool(self._url or self._headers)

    # -- internals --------------------------------------------------------------------------

    def _to(self, state: int) -> None:
        """Every change of the connection's state goes through here (states.py's table)."""
        if not CLIENT_ALLOWED[self._state][state]:
            raise refused(ClientState, self._state, state)
        self._state = state

    def _head_continues(self, data: bytes) -> None:
        """A request head spans reads: keep all of it for the request line's check (and a
        repeated Content-Length), in a bytearray so that a head sent byte by byte does not
        cost a copy per byte. Its size is bounded as the parser's is (`_growing`)."""
        if self._line:
            line = self._line
            if type(line) is not bytearray:
                line = self._line = bytearray(line)
        else:
            line = self._mid
            if type(line) is not bytearray:
                line = self._mid = bytearray(line)
        line += data

    def _check_request_line(self, method: bytes, target: bytes) -> None:
        """The request line's exact check, when the two indexes cannot tell (the request began
        mid-read or after empty lines, or its line is not as expected)."""
        line = self._line
        if not exact_request_line(line or self._mid, bool(line), method, target,
                                  self.parser.get_http_version()):
            raise RequestRejected(errors.BAD_REQUEST_LINE)

    def _restart_head(self, head: bytes) -> None:
        """Parse the request's head again from its start (see standins.RepeatedLength)."""
        parser = self.parser = HttpRequestParser(self)
        parser.set_dangerous_leniencies(lenient_chunked_length=True)
        self._url.clear()
        self._headers = []
        self._marks.append(True)  # a boundary again: the head begins at `head`'s start
        self._unparsed = self._head_start
        self.data_received(head)

    def _upgrade_requested(self, early: bytes) -> None:
        """The parser stopped after an upgrade request's head: what follows is for the new
        protocol if the dyno switches (a tunnel), so it waits, and reading pauses."""
        self._reading = None
        self._early = early
        self.gate.pause(UPGRADING)

    def _upgrade_body_follows(self, data: bytes) -> None:
        """An upgrade request's body of known length follows its head: read it as the body
        (a stand-in parser), then what follows is for the new protocol."""
        self.parser = UpgradeBody(self, self._reading, self.parser, self._upgrade_body)
        self._upgrade_body = 0
        if data:
            self.data_received(data)

    def _upgrade_declined(self) -> None:
        """The dyno answered the upgrade request with an ordinary response. Bytes the client
        sent after it were meant for the other protocol: then the connection ends; else it
        carries on as HTTP (the parser resumes after the upgrade request)."""
        if self._early:
            self._linger()
            return
        self._early = b""
        self.gate.resume(UPGRADING)

    def _growing(self) -> bool:
        """An incomplete head or trailer section keeps growing: bound what the parser holds.
        -> True if the request was refused."""
        reading = self._reading
        if reading is not None and reading.framing is not CHUNKED:
            self._unparsed = 0  # a body of known length: the parser holds nothing
            return False
        guard = self._guard
        if guard is None:
            limits = self.router.config.limits
            guard = self._guard = GrowthGuard(limits.header_line, limits.request_line,
                                              limits.headers)
        verdict = guard.check(self._unparsed, self._headers, sum(map(len, self._url)))
        if verdict == GrowthGuard.OK:
            return False
        self._reject(errors.REQUEST_LINE_TOO_LONG if verdict == GrowthGuard.FIRST_LINE_TOO_LONG
                     else errors.TOO_MANY_HEADERS if verdict == GrowthGuard.TOO_MANY_FIELDS
                     else errors.HEADER_TOO_LONG)
        return True

    def _close(self) -> None:
        """End the connection once the exchange being answered is done."""
        self._to(CLOSING)
        self._serving = None
        self._drop_queue()
        self.transport.close()

    def _linger(self) -> None:
        """The connection ends after what was written: send nothing more, but read (and
        drop) what the client still sends for a moment before closing. Closing a socket with
        unread bytes makes the kernel send a reset, which can destroy the last answer before
        the client reads it (nginx's "lingering close"). A client that reads the answer and
        closes ends it at once; one that goes on sending (an upload the app refused early)
        is read until it is quiet for a moment, within a limit."""
        self._serving = None
        self._drop_queue()
        transport = self.transport
        if transport.is_closing() or not transport.can_write_eof():
            self._to(CLOSING)
            transport.close()
            return
        self._to(LINGERING)
        transport.write_eof()
        transport.resume_reading()
        now = self.router.now
        self._linger_end = now + _LINGER_TOTAL
        self.deadline = now + min(_LINGER, self.router.header_timeout)

    def _drop_queue(self) -> None:
        queue = self._queue
        while queue:
            queue.popleft().client_lost()  # never dispatched: nothing to release or log

    def _reject(self, error: RouterError) -> None:
        """The client broke HTTP or a limit: answer `error` and close, after any request
        before this one. The parser stops here; nothing after it is read."""
        if self._state:  # not OPEN
            return  # already answered (the parser went on through the rest of that read)
        reading, serving = self._reading, self._serving
        self._reading = None
        if reading is not None and reading is serving and reading.phase != DONE:
            # Its body broke off mid-way: the page, or cut the response (either ends this
            # connection).
            reading.fail(error)
            return
        if reading is not None and reading is not serving:
            self._queue.remove(reading)  # a queued request whose body broke: never dispatched
            reading.client_lost()
        self._answer_unrouted(error)

    def _answer_unrouted(self, error: RouterError) -> None:
        """`error` for a request that reached no app: log it, send the page (now, or once the
        request being answered is done), and close."""
        router = self.router
        self.log.router_error(None, _wall_clock(), error.code, error.desc, error.level, b"",
                              b"", None, router.request_ids.next(), self.peer, None, None,
                              None, error.status, error.body_length)
        router.metrics.count_unrouted(error.status)
        serving = self._serving
        if serving is None or serving.phase == DONE:
            self.transport.write(error.response)
            self._linger()
        else:
            # The requests before the bad one are answered first (exchange_done); nothing
            # after the bad one is read.
            self._to(REFUSING)
            self._error_after = error

    def _after_last(self) -> None:
        """The last request before a bad one was answered: now the bad one's page."""
        error, self._error_after = self._error_after, None
        if error is not None:
            self.transport.write(error.response)
        self._linger()

