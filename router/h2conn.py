"""An HTTP/2 connection from a client (over TLS, ALPN "h2"): many requests at once.

`H2Connection` is an asyncio `Protocol`. The `h2` library does the framing, HPACK and the
protocol's state (RFC 9113); this module decides what the router does with it: each stream is
an `H2Stream` (h2stream.py) whose request takes the HTTP/1.1 path to a dyno unchanged (one
`Exchange` per stream, exchange.py), and it enforces what the router advertises (h2limits.py):

- SETTINGS_MAX_CONCURRENT_STREAMS: a stream beyond it is refused (RST_STREAM REFUSED_STREAM,
  RFC 9113 §5.1.2) and counts against the reset budget;
- SETTINGS_MAX_HEADER_LIST_SIZE: the `h2` library's HPACK decoder refuses a larger head (the
  connection ends, ENHANCE_YOUR_CALM); a header block spread over CONTINUATION frames is
  measured before the library gathers it (`HeaderBlockScanner`); more fields than the router's
  HTTP/1.1 limit, or a field too long, gets the same 400/414 page on that stream alone;
- flow control: request bodies get window back as they are passed on to the dyno, the
  connection's window being the bound on what all of them hold here; responses are sent within
  the client's windows, and what does not fit pauses that stream's dyno connection;
- RST_STREAM from the client cancels that stream's request only (H27), and too many of them
  in a window of time (rapid reset, CVE-2023-44487) end the connection: GOAWAY
  ENHANCE_YOUR_CALM;
- draining (the router stopping): GOAWAY NO_ERROR naming the last stream taken, the streams in
  progress finish, new ones are refused, then the connection closes.

Timeouts are the streams' (their exchanges move each stream's deadline); the connection's
`deadline` is the earliest of them, or, with no stream open, the keep-alive timeout (the
router's header timeout, as for an idle HTTP/1.1 connection). The router's sweep calls
`expire` (timers.py).

Bytes the library has to send are written once per batch: at the end of each read from the
client, or once the loop's current callbacks (the dyno connections' reads) have run.
"""

from __future__ import annotations

import asyncio
from time import time as _wall_clock
from typing import TYPE_CHECKING

from h2.config import H2Configuration
from h2.connection import H2Connection as H2Protocol
from h2.errors import ErrorCodes
from h2.events import (ConnectionTerminated, DataReceived, RemoteSettingsChanged,
                       RequestReceived, StreamEnded, StreamReset, TrailersReceived,
                       WindowUpdated)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from router import errors
from router.errors import RequestRejected, RouterError
from router.exchange import Exchange
from router.h2limits import H2Limits, HeaderBlockScanner, ResetBudget
from router.h2stream import H2Stream, request_fields
from router.headers import EXPECT_CONTINUE, UPGRADE
from router.limits import check_request_head, check_trailers

if TYPE_CHECKING:
    from router.listener import Listener
    from router.server import Router

_NEVER = float("inf")
_CONNECT = b"CONNECT"
_DEFAULT_WINDOW = 65535  # RFC 9113 §6.9.2: every window's size before SETTINGS change it


class H2Connection:
    __slots__ = ("router", "listener", "log", "limits", "transport", "peer", "rewriter", "h2", "streams",
                 "deadline", "write_paused", "draining", "_resets", "_scanner", "_flush_due",
                 "_closed")

    def __init__(self, router: Router, listener: Listener | None = None,
                 limits: H2Limits | None = None) -> None:
        """`listener`: the TLS listener the connection came in on (X-Forwarded-Proto and
        -Port, router/listener.py); the log lines are the router's HTTP/2 log's."""
        self.router = router
        self.listener = listener
        self.log = router.h2_log
        self.limits = limits if limits is not None else H2Limits()
        self.transport: asyncio.Transport | None = None
        self.peer = b""
        self.rewriter = None
        self.h2: H2Protocol | None = None
        self.streams: dict[int, H2Stream] = {}
        self.deadline = router.now + router.header_timeout
        self.write_paused = False
        self.draining = False
        self._resets = ResetBudget(self.limits.max_resets, self.limits.reset_window)
        self._scanner = HeaderBlockScanner(self.limits.max_header_list_size)
        self._flush_due = False
        self._closed = False

    # -- asyncio Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport, peer: bytes | None = None) -> None:
        self.transport = transport
        address = transport.get_extra_info("peername")
        connected = address[0].encode("ascii") if address else b""
        self.peer = connected if peer is None else peer
        router = self.router
        self.rewriter = (self.listener or router.plain).rewriter_for(connected)
        limits = self.limits
        h2 = self.h2 = H2Protocol(H2Configuration(
            client_side=False, header_encoding=None,
            # The router makes the response fields itself (h2stream.response_fields): lower
            # case, no connection-specific field. What clients send is checked by the library.
            validate_outbound_headers=False, normalize_outbound_headers=False))
        # What the first SETTINGS frame advertises (initiate_connection sends these values).
        h2.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            SettingCodes.INITIAL_WINDOW_SIZE: limits.stream_window,
        })
        h2.decoder.max_header_list_size = limits.max_header_list_size
        h2.initiate_connection()
        # The library's own stream check is a connection error: moved above the advertised
        # limit (without telling the client) so that the router refuses streams one by one.
        h2.local_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = limits.hard_stream_ceiling
        h2.local_settings.acknowledge()
        if limits.connection_window > _DEFAULT_WINDOW:
            h2.increment_flow_control_window(limits.connection_window - _DEFAULT_WINDOW)
        transport.write(h2.data_to_send())
        router.clients.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if not self._scanner.feed(data):
            self._calm_down()  # a header block past the header list size
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:
            # The library has queued GOAWAY with the error's code (PROTOCOL_ERROR,
            # ENHANCE_YOUR_CALM for an oversized HPACK list, ...): send it and end.
            self._end()
            return
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.body_received(event.data, event.flow_controlled_length)
                else:  # a stream the router refused or ended: only the connection's window
                    self._acknowledge(event.stream_id, event.flow_controlled_length)
            elif kind is RequestReceived:
                self._request(event.stream_id, event.headers, event.stream_ended is not None)
            elif kind is StreamEnded:
                stream = self.streams.get(event.stream_id)
                if stream is not None and not stream.ended:
                    stream.body_ended([])
            elif kind is WindowUpdated:
                self._window_opened(event.stream_id)
            elif kind is StreamReset:
                self._client_reset(event.stream_id)
            elif kind is TrailersReceived:
                self._trailers(event.stream_id, event.headers)
            elif kind is RemoteSettingsChanged:
                if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self._window_opened(0)
            elif kind is ConnectionTerminated:
                self.draining = True  # the client's GOAWAY: it opens no more streams
                if not self.streams:
                    self._end()
            if self._closed:
                return
        self._flush()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        router = self.router
        router.clients.discard(self)
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.client_reset()  # H27 for each request in progress
        if router.draining is not None:
            router.check_drained()

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in self.streams.values():
            stream.pace()

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            stream.pace()

    # -- requests -----------------------------------------------------------------------------

    def _request(self, stream_id: int, headers, ended: bool) -> None:
        """A new stream's request head."""
        if self.draining or len(self.streams) >= self.limits.max_concurrent_streams:
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            if not self.draining and not self._resets.spend(self.router.now):
                self._calm_down()
            return
        stream = self.streams[stream_id] = H2Stream(self, stream_id)
        method, target, fields = request_fields(headers, ended)
        router = self.router
        wall = _wall_clock()
        try:
            if method == _CONNECT:
                raise RequestRejected(errors.CONNECT_METHOD)  # no tunnels here (RFC 9113 §8.5)
            check_request_head(method, target, fields, router.config.limits)
            head, host, request_id, fwd, framing, flags = self.rewriter.rewrite(
                method, target, fields, self.peer, int(wall * 1000))
        except RequestRejected as rejected:
            self._answer_unrouted(stream, rejected.error, method)
            return
        start = router.now = router.loop.time()
        # http11=False: the dyno connection sends the response as to an HTTP/1.0 client (no
        # chunked framing, the body ends with the message), which is what a stream carries.
        exchange = stream.exchange = Exchange(
            stream, router, method, target, head, host, request_id, fwd, framing, True, False,
            start, wall, flags & ~(EXPECT_CONTINUE | UPGRADE))
        exchange.dispatch()
        if ended and stream.exchange is not None:
            stream.body_ended([])

    def _trailers(self, stream_id: int, trailers) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.ended:
            return
        try:
            check_trailers(trailers, self.router.config.limits)
        except RequestRejected as rejected:
            self._refuse_midway(stream, rejected.error)
            return
        stream.body_ended(list(trailers))

    def _refuse_midway(self, stream: H2Stream, error: RouterError) -> None:
        """A request broke a limit after its head (bad trailers): its page, or a reset."""
        exchange = stream.exchange
        if exchange is not None:
            stream.ended = True
            exchange.fail(error)
        else:
            self.reset_stream(stream)

    def _answer_unrouted(self, stream: H2Stream, error: RouterError, method: bytes) -> None:
        """`error` for a request that reached no app: logged, and its page on that stream."""
        router = self.router
        self.log.router_error(None, _wall_clock(), error.code, error.desc, error.level,
                              method, b"", None, router.request_ids.next(), self.peer, None,
                              None, None, error.status, error.body_length)
        router.metrics.count_unrouted(error.status)
        stream.answer(error, method == b"HEAD")

    def _client_reset(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.client_reset()
            self._forgotten()
        if not self._resets.spend(self.router.now):
            self._calm_down()

    # -- responses (the streams call these) ---------------------------------------------------

    def send_head(self, stream: H2Stream, fields: list[tuple[bytes, bytes]]) -> None:
        if self._closed:
            return  # the connection ended; its streams are ending with it
        self.h2.send_headers(stream.stream_id, fields)
        self._flush_soon()

    def send_body(self, stream: H2Stream, data: bytes) -> None:
        """As much of `data` as the client's windows take now; the stream keeps the rest."""
        if self._closed:
            return
        h2, stream_id = self.h2, stream.stream_id
        size, at = len(data), 0
        while at < size:
            step = min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size,
                       size - at)
            if step <= 0:
                break
            h2.send_data(stream_id, data[at:at + step] if step < size else data)
            at += step
        if at < size:
            stream.hold(data[at:])
        elif stream.blocked:
            stream.unblock()
        self._flush_soon()

    def end_response(self, stream: H2Stream) -> None:
        """The response is complete: END_STREAM. A request body the client is still sending
        is not wanted any more: RST_STREAM NO_ERROR (RFC 9113 §8.1)."""
        if not stream.reset and not self._closed:
            stream_id = stream.stream_id
            try:
                self.h2.end_stream(stream_id)
                if not stream.ended:
                    self.h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
            except StreamClosedError:
                pass  # the client reset it meanwhile
            self._flush_soon()
        self._forget(stream)

    def reset_stream(self, stream: H2Stream, code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        if not stream.reset and not self._closed:
            stream.reset = True
            try:
                self.h2.reset_stream(stream.stream_id, code)
            except StreamClosedError:
                pass
            self._flush_soon()
        self._forget(stream)

    def give_window(self, stream: H2Stream, size: int) -> None:
        """`size` bytes of the stream's request body were passed on: the client may send as
        many more (WINDOW_UPDATE, sent by the library once enough has gathered)."""
        if not self._closed:
            self._acknowledge(stream.stream_id, size)
            self._flush_soon()

    def _acknowledge(self, stream_id: int, size: int) -> None:
        if size:
            self.h2.acknowledge_received_data(size, stream_id)

    def _window_opened(self, stream_id: int) -> None:
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.window_opened()
            return
        for stream in list(self.streams.values()):  # the connection's window
            if stream.blocked:
                stream.window_opened()

    def _forget(self, stream: H2Stream) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            self._forgotten()

    def _forgotten(self) -> None:
        if not self.streams:
            router = self.router
            self.deadline = router.now + router.header_timeout  # idle: the keep-alive timeout
            if self.draining:
                self._end()

    # -- writing --------------------------------------------------------------------------------

    def _flush_soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            self.router.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self._closed:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def _goaway(self, code: int) -> None:
        """GOAWAY naming the last stream taken, written beside the library (whose own
        close_connection would refuse every frame after it, even for streams in progress)."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.h2.highest_inbound_stream_id
        frame.error_code = code
        self._flush()
        self.transport.write(frame.serialize())

    def _calm_down(self) -> None:
        """The client is misbehaving (rapid resets, a header block too large): GOAWAY
        ENHANCE_YOUR_CALM and end the connection; its requests in progress end too (H27)."""
        if self._closed:
            return
        self._goaway(ErrorCodes.ENHANCE_YOUR_CALM)
        self._end()

    def _end(self) -> None:
        self._flush()
        self._closed = True
        self.transport.close()

    # -- timeouts and draining (the sweep calls these) ----------------------------------------

    def expire(self, now: float) -> None:
        if not self.streams:
            self.deadline = _NEVER
            self._goaway(ErrorCodes.NO_ERROR)  # idle too long
            self._end()
            return
        for stream in list(self.streams.values()):
            if stream.deadline <= now:
                stream.expire(now)
        self.deadline = min((stream.deadline for stream in self.streams.values()),
                            default=now + self.router.header_timeout)

    def drain(self) -> None:
        """The router is stopping: no new streams (GOAWAY), finish those in progress."""
        if self.draining or self._closed:
            return
        self.draining = True
        self._goaway(ErrorCodes.NO_ERROR)
        if not self.streams:
            self._end()

    def idle(self) -> bool:
        return not self.streams
