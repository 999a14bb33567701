"""HTTP/2 over TLS for tests: a client built on the `h2` library that can also misbehave on
purpose (reset streams, hold its windows shut, send header blocks of any size)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

import trustme
from h2.config import H2Configuration
from h2.connection import ConnectionState
from h2.connection import H2Connection as H2Protocol
from h2.events import (ConnectionTerminated, DataReceived, ResponseReceived, StreamEnded,
                       StreamReset, TrailersReceived, WindowUpdated)
from h2.settings import SettingCodes
from hyperframe.frame import ContinuationFrame, HeadersFrame



def client_context(ca: trustme.CA, alpn: tuple[str, ...] = ("h2",)) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(list(alpn))
    return context


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    reset: int | None = None  # the RST_STREAM error code, if the router reset the stream
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def get(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class H2Client:
    """A client connection. `auto_window=False`: response bytes are not given back as window
    until `give_window` (the router must hold the rest back)."""

    def __init__(self, reader, writer, settings: dict | None = None,
                 auto_window: bool = True) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = H2Protocol(H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.auto_window = auto_window
        self.responses: dict[int, Response] = {}
        self.unacked: dict[int, int] = {}
        self.terminated: ConnectionTerminated | None = None
        self.window_opened = asyncio.Event()
        self.closed = asyncio.Event()
        self.flush()
        self._reading = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int, ca: trustme.CA, **options) -> H2Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(ca), server_hostname="app1.localhost")
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        return cls(reader, writer, **options)

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for event in self.h2.receive_data(data):
                    self._on(event)
                self.flush()
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            self.closed.set()
            for response in self.responses.values():
                response.done.set()

    def _on(self, event) -> None:
        response = self.responses.get(getattr(event, "stream_id", 0))
        if isinstance(event, ResponseReceived):
            response.status = int(dict(event.headers)[b":status"])
            response.headers = list(event.headers)
        elif isinstance(event, DataReceived):
            response.body += event.data
            if self.auto_window:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                self.unacked[event.stream_id] = (self.unacked.get(event.stream_id, 0)
                                                 + event.flow_controlled_length)
        elif isinstance(event, (StreamEnded,)):
            response.done.set()
        elif isinstance(event, StreamReset):
            if response is not None:
                response.reset = event.error_code
                response.done.set()
        elif isinstance(event, TrailersReceived):
            response.headers += list(event.headers)
        elif isinstance(event, WindowUpdated):
            self.window_opened.set()
        elif isinstance(event, ConnectionTerminated):
            self.terminated = event
            if event.error_code == 0:
                # RFC 9113 §6.8: streams up to last_stream_id still complete after a graceful
                # GOAWAY; the library's client would refuse their frames from here on.
                self.h2.state_machine.state = ConnectionState.CLIENT_OPEN

    def send(self, path: str = "/", host: str = "app1.localhost", method: str = "GET",
             headers: list[tuple[str, str]] = (), body: bytes | None = None,
             end: bool = True) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.responses[stream_id] = Response()
        fields = [(":method", method), (":scheme", "https"), (":authority", host),
                  (":path", path), *headers]
        self.h2.send_headers(stream_id, [(k.encode(), v.encode()) for k, v in fields],
                             end_stream=body is None and end)
        if body is not None:
            self.h2.send_data(stream_id, body, end_stream=end)
        self.flush()
        return stream_id

    async def response(self, stream_id: int, timeout: float = 10.0) -> Response:
        response = self.responses[stream_id]
        await asyncio.wait_for(response.done.wait(), timeout)
        return response

    async def get(self, path: str = "/", **options) -> Response:
        return await self.response(self.send(path, **options))

    def reset(self, stream_id: int) -> None:
        self.h2.reset_stream(stream_id)
        self.flush()

    def give_window(self, stream_id: int) -> None:
        size = self.unacked.pop(stream_id, 0)
        if size:
            self.h2.acknowledge_received_data(size, stream_id)
            self.flush()

    def raw_header_block(self, stream_id: int, block: bytes, frames: int) -> None:
        """A header block cut into a HEADERS frame and `frames - 1` CONTINUATION frames,
        written beside the library (it would not send a block this large)."""
        step = max(1, len(block) // frames)
        pieces = [block[i:i + step] for i in range(0, len(block), step)] or [b""]
        first = HeadersFrame(stream_id, data=pieces[0], flags=["END_STREAM"])
        out = [first.serialize()]
        for index, piece in enumerate(pieces[1:], 2):
            frame = ContinuationFrame(stream_id, data=piece)
            if index == len(pieces):
                frame.flags.add("END_HEADERS")
            out.append(frame.serialize())
        self.writer.write(b"".join(out))

    async def close(self) -> None:
        self._reading.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError, ssl.SSLError):
            pass


INITIAL_WINDOW = SettingCodes.INITIAL_WINDOW_SIZE
