"""Receivers for log drains, on loopback: a syslog server (TCP or TLS) and an HTTPS endpoint.

Both keep exactly what arrived, so tests can check the bytes, and let a test wait for a
number of messages (`wait_for`) instead of for time. Used by the drain tests and
bench/drain_bench.py.

- `SyslogReceiver`: reads RFC 6587 octet-counted frames; `stalled=True` accepts connections
  and does not read them (a receiver that hangs) until `resume()`; `rcvbuf` sets a small
  SO_RCVBUF so that a stalled receiver's kernel buffers fill after a few KB, not megabytes;
  `stop()`/`start()` take it away and bring it back on the same port; `wait_closed()` waits
  for the sender to close its connections.
- `HttpsReceiver`: an aiohttp server taking `application/logplex-1` POSTs; `refuse` makes it
  answer 503 (a receiver that is up but failing), `endless` answers 200 with a body that
  never ends, `hold` (an event) keeps the answer to every POST after the first until set.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass

from aiohttp import web


def parse_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete RFC 6587 octet-counted frames at the start of `data` and what is left of
    it (a frame's start), as a syslog receiver reads them; ValueError on bytes that are not
    frames."""
    out: list[bytes] = []
    view = memoryview(data)
    start = 0
    while True:
        space = data.find(b" ", start, start + 12)
        if space < 0:
            if len(data) - start >= 12:
                raise ValueError(f"no octet count at byte {start}")
            break
        count = data[start:space]
        if not count.isdigit():
            raise ValueError(f"no octet count at byte {start}: {bytes(count)!r}")
        end = space + 1 + int(count)
        if end > len(data):
            break
        out.append(bytes(view[space + 1:end]))
        start = end
    return out, bytes(view[start:])


def tls_pair():
    """(server context, client context, CA PEM bytes): a throwaway CA and a certificate for
    127.0.0.1 and localhost signed by it."""
    import trustme

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client, ca.cert_pem.bytes()


class _Counted:
    """Messages so far, and a way to wait for a number of them."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self._changed = asyncio.Event()

    def _arrived(self, messages: list[bytes]) -> None:
        if messages:
            self.messages.extend(messages)
            self._changed.set()

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[bytes]:
        """Until at least `count` messages arrived (TimeoutError after `timeout` s)."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages

    def texts(self) -> list[str]:
        """Each message's MSG part (after `PROCID - `), without its newline."""
        return [m.decode().split(" - ", 1)[1].rstrip("\n") for m in self.messages]


class _SyslogProtocol(asyncio.Protocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self._receiver = receiver
        self._pending = b""

    def connection_made(self, transport) -> None:
        self._receiver.connections.append(transport)
        self._receiver.open += 1
        if self._receiver.stalled:
            transport.pause_reading()

    def connection_lost(self, exc) -> None:
        self._receiver.open -= 1
        self._receiver._changed.set()

    def data_received(self, data: bytes) -> None:
        self._receiver.raw += data
        messages, self._pending = parse_frames(self._pending + data)
        self._receiver._arrived(messages)


class SyslogReceiver(_Counted):
    def __init__(self, context: ssl.SSLContext | None = None, *, stalled: bool = False,
                 rcvbuf: int | None = None) -> None:
        super().__init__()
        self.context = context
        self.stalled = stalled
        self.rcvbuf = rcvbuf
        self.open = 0  # connections not closed yet
        self.raw = bytearray()  # every byte received, in order
        self.port = 0
        self.connections: list[asyncio.Transport] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        scheme = "syslog+tls" if self.context else "syslog"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> SyslogReceiver:
        loop = asyncio.get_running_loop()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf is not None:
            # Set before listen(): accepted connections inherit it (and its TCP window).
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        listener.bind(("127.0.0.1", self.port))
        self._server = await loop.create_server(lambda: _SyslogProtocol(self), sock=listener,
                                                ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def resume(self) -> None:
        """A stalled receiver starts reading (what its connections hold, and the rest)."""
        self.stalled = False
        for transport in self.connections:
            if not transport.is_closing():
                transport.resume_reading()

    async def wait_closed(self, timeout: float = 20.0) -> None:
        """Until every connection made to it was closed by the sender (read to its end)."""
        async with asyncio.timeout(timeout):
            while self.open:
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        """Close the listener and every connection: the receiver is away."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for transport in self.connections:
                transport.abort()
            self.connections.clear()
            await server.wait_closed()


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes
    auth: str | None


class HttpsReceiver(_Counted):
    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.context = context
        self.posts: list[Post] = []
        self.refuse = False
        self.endless = False
        self.hold: asyncio.Event | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, userinfo: str = "", path: str = "/logs") -> str:
        return f"https://{userinfo}127.0.0.1:{self.port}{path}"

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.refuse:
            return web.Response(status=503, text="down for maintenance")
        self.posts.append(Post(dict(request.headers), body, request.headers.get("Authorization")))
        messages, rest = parse_frames(body)
        assert rest == b"", f"a POST body ended inside a frame: {rest[:80]!r}"
        self._arrived(messages)
        if self.hold is not None and len(self.posts) > 1:
            await self.hold.wait()
        if self.endless:
            return await self._answer_forever(request)
        return web.Response(status=204)

    @staticmethod
    async def _answer_forever(request: web.Request) -> web.StreamResponse:
        """200, then 64 MiB of body that does not end there: the client must hang up (a
        client that reads it all holds 64 MiB, then waits in vain)."""
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        chunk = b"y" * 65536
        for _ in range(1024):  # ends early when the client closes the connection
            await response.write(chunk)
        await asyncio.Event().wait()  # never: the server's cleanup cancels it

    async def start(self) -> HttpsReceiver:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._take)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if self.hold is not None:
            self.hold.set()  # answers held are given, so that the server can stop
        if runner is not None:
            await runner.cleanup()


class NotHttpReceiver:
    """A TLS server that answers every request with bytes that are not HTTP."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        writer.close()

    async def start(self) -> NotHttpReceiver:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0,
                                                  ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
