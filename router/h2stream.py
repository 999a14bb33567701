"""One HTTP/2 stream: one request, proxied to a dyno over HTTP/1.1 as any other.

An `H2Stream` is what its `Exchange` (exchange.py) sees as the client (a `Downstream`,
downstream.py), so the request takes exactly the HTTP/1.1 path: the same routing, the same
rewritten head for the dyno (X-Forwarded-*, Via, X-Request-Id, X-Request-Start), the same
H-codes, retries, timeouts and log line. What differs is at the two ends:

- The request: its HEADERS become the method, target and fields an HTTP/1.1 head would have
  given (`request_fields`: :authority as Host, cookie crumbs joined, RFC 9113 §8.2.3 and
  §8.3.1), and a body without Content-Length goes to the dyno chunked.
- The response: the exchange's dyno connection writes what it would send an HTTP/1.0 client
  (the exchange is made with `http11=False`: no chunked framing, the body ends with the
  message, interim responses dropped) to the stream's `transport`, which is the stream itself.
  The first write begins with the head the router made (headers.rewrite_response); `write`
  turns it into HEADERS (`response_fields`: names in lower case, connection-specific fields
  dropped, RFC 9113 §8.2.2) and the rest into DATA within the client's flow-control windows,
  through the connection (h2conn.py). The end of the response is `exchange_done`.

Back-pressure both ways: reading the request body "paused" (the read gate, flow.py) means the
router stops giving the client window for it (what arrives meanwhile, within the window it
had, still goes on to the dyno); a response the client's windows hold back is kept here and
pauses the dyno connection's reading until WINDOW_UPDATE frees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.downstream import Downstream
from router.flow import PEER_BUFFER_FULL, ReadGate

if TYPE_CHECKING:
    from router.errors import RouterError
    from router.exchange import Exchange
    from router.h2conn import H2Connection

_NEVER = float("inf")
# RFC 9113 §8.2.2: fields that only mean something for one HTTP/1.1 connection.
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"upgrade"})
_CHUNKED_FIELD = (b"transfer-encoding", b"chunked")


class H2Stream(Downstream):
    __slots__ = ("connection", "stream_id", "exchange", "ended", "reset", "_head_due",
                 "_held", "_unacked", "_read_paused", "_end_due", "blocked")

    def __init__(self, connection: H2Connection, stream_id: int) -> None:
        Downstream.__init__(self, connection.log)
        self.connection = connection
        self.stream_id = stream_id
        self.transport = self  # the dyno connection writes the response here (`write`)
        self.gate = ReadGate(self)
        self.deadline = _NEVER
        self.exchange: Exchange | None = None
        self.ended = False  # the client's side ended (END_STREAM) or was reset
        self.reset = False  # the stream was reset, by either side
        self._head_due = True  # the next write starts with the response head
        self._held: list[bytes] = []  # response bytes the client's windows hold back
        self._unacked = 0  # request body bytes not yet given back as window (reading paused)
        self._read_paused = False
        self._end_due = False  # the response ended while bytes were held
        self.blocked = False  # the client's windows hold the response back

    # -- the transport the exchange and the dyno connection see ----------------------------

    def write(self, data: bytes) -> None:
        """Response bytes from the dyno connection: the head (first), then body."""
        if self.reset:
            return
        if self._head_due:
            self._head_due = False
            end = data.index(b"\r\n\r\n") + 4
            self.connection.send_head(self, response_fields(data[:end]))
            data = data[end:]
            if not data:
                return
        if self._held:
            self._held.append(data)
        else:
            self.connection.send_body(self, data)

    def is_closing(self) -> bool:
        return self.reset

    def pause_reading(self) -> None:
        self._read_paused = True

    def resume_reading(self) -> None:
        self._read_paused = False
        if self._unacked:
            unacked, self._unacked = self._unacked, 0
            self.connection.give_window(self, unacked)

    # -- what the connection tells it --------------------------------------------------------

    def body_received(self, data: bytes, flow_controlled: int) -> None:
        """A DATA frame's payload: on to the dyno; its window comes back once it is passed on,
        not while the dyno (or the wait for one) holds the body back."""
        exchange = self.exchange
        if exchange is not None:
            exchange.request_body(data)
            if exchange.pending and exchange.upstream is not None:
                exchange.flush_request()
        if self._read_paused and exchange is not None:
            self._unacked += flow_controlled
        else:
            self.connection.give_window(self, flow_controlled)

    def body_ended(self, trailers: list[tuple[bytes, bytes]]) -> None:
        """END_STREAM from the client (with trailer fields, if any)."""
        self.ended = True
        exchange = self.exchange
        if exchange is not None and not exchange.request_complete:
            exchange.request_ended(trailers)
            if exchange.pending and exchange.upstream is not None:
                exchange.flush_request()

    def client_reset(self) -> None:
        """RST_STREAM from the client: this request only is cancelled (H27)."""
        self.reset = self.ended = True
        self._held.clear()
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.client_lost()

    def window_opened(self) -> None:
        """WINDOW_UPDATE: send what was held back, then let the dyno connection read on."""
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        self.connection.send_body(self, data)  # holds the rest back again if need be
        if not self._end_due:
            return
        if self._held:
            self._wait_for_window()  # progress: the idle timeout starts again
        else:
            self._end_due = False
            self.deadline = _NEVER
            self.connection.end_response(self)

    def hold(self, data: bytes) -> None:
        """The client's windows are full: keep `data`, pause the dyno connection."""
        self._held.append(data)
        self.blocked = True
        self.pace()

    def unblock(self) -> None:
        self.blocked = False
        self.pace()

    def pace(self) -> None:
        """Pause or resume the dyno connection's reading: the client's windows are full, or
        the connection's socket is not taking writes."""
        paused = self.blocked or self.connection.write_paused
        if paused == self.write_paused:
            return
        self.write_paused = paused
        exchange = self.exchange
        if exchange is not None and exchange.upstream is not None:
            gate = exchange.upstream.gate
            if paused:
                gate.pause(PEER_BUFFER_FULL)
            else:
                gate.resume(PEER_BUFFER_FULL)

    def expire(self, now: float) -> None:
        self.deadline = _NEVER
        if self.exchange is not None:
            self.exchange.expire(now)
        elif self._held:
            self.connection.reset_stream(self)  # the client stopped taking the response

    # -- Downstream: what the exchange calls -------------------------------------------------

    def move_deadline(self, when: float) -> None:
        self.deadline = when
        connection = self.connection
        if when < connection.deadline:
            connection.deadline = when

    def exchange_done(self, exchange: Exchange) -> None:
        """The response is complete: END_STREAM once its last bytes left."""
        self.exchange = None
        self._response_ended()

    def router_answer(self, exchange: Exchange, error: RouterError) -> None:
        """The router's page for `error` on this stream only; the connection carries on."""
        self.exchange = None
        exchange.log_error(error, error.status)
        self.answer(error, exchange.is_head)

    def answer(self, error: RouterError, is_head: bool) -> None:
        """Send the router's page for `error` and end the stream."""
        self.write(error.head_response if is_head else error.response)
        self._response_ended()

    def _response_ended(self) -> None:
        if self._held:
            self._end_due = True  # once the client's windows let the rest go
            self._wait_for_window()
        else:
            self.deadline = _NEVER
            self.connection.end_response(self)

    def _wait_for_window(self) -> None:
        """The dyno is done, the rest of its response is held here: the client must take it
        within the idle timeout (else `expire` resets the stream, as H28 cuts HTTP/1.1)."""
        router = self.connection.router
        self.move_deadline(router.now + router.idle_timeout)

    def response_interrupted(self, exchange: Exchange, error: RouterError) -> None:
        """The response broke off after its head went out: logged, and the stream reset so
        that the client sees it was cut short (RFC 9113 §8.1)."""
        self.exchange = None
        self.deadline = _NEVER
        exchange.log_error(error, exchange.status)
        self.connection.reset_stream(self)

    def handed_over(self) -> None:
        raise AssertionError("HTTP/2 requests are never upgraded (RFC 9113 §8.6)")

    def take_early_data(self) -> bytes:
        return b""


def request_fields(headers: list[tuple[bytes, bytes]], end_stream: bool
                   ) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    """A request's HEADERS (validated by the h2 library: pseudo-fields first and once, names in
    lower case, no connection-specific field) as an HTTP/1.1 request's parts.
    -> (method, target, fields). The Host field is :authority when given (RFC 9113 §8.3.1);
    cookie crumbs are joined into one field (§8.2.3); a body without Content-Length is sent to
    the dyno chunked; Expect is dropped (100-continue is an HTTP/1.1 mechanism here)."""
    method = target = authority = None
    fields: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] | None = None
    has_length = False
    for name, value in headers:
        if name[0] == 58:  # ":"
            if name == b":method":
                method = value
            elif name == b":path":
                target = value
            elif name == b":authority":
                authority = value
        elif name == b"cookie":
            if cookies is None:
                cookies = []
            cookies.append(value)
        elif name == b"host":
            if authority is None:
                fields.append((name, value))
        elif name == b"content-length":
            has_length = True
            fields.append((name, value))
        elif name != b"expect":
            fields.append((name, value))
    if authority is not None:
        fields.insert(0, (b"host", authority))
    if cookies is not None:
        fields.append((b"cookie", b"; ".join(cookies)))
    if not end_stream and not has_length:
        fields.append(_CHUNKED_FIELD)
    return method or b"", target or b"", fields


def response_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The HTTP/1.1 head the router made for a response (headers.rewrite_response, or a
    router page) as HTTP/2 header fields: ":status" first, names in lower case, without the
    connection-specific fields (RFC 9113 §8.2.2, §8.3.2)."""
    lines = head.split(b"\r\n")
    fields = [(b":status", lines[0][9:12])]
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b": ")
        name = name.lower()
        if name not in CONNECTION_SPECIFIC:
            fields.append((name, value))
    return fields
