"""Receivers for log drains, on loopback: a syslog server (TCP or TLS) and an HTTPS endpoint.

Both keep exactly what arrived, so tests can check the bytes, and let a test wait for a
number of messages (`wait_for`) instead of for time. Used by the drain tests and
bench/drain_bench.py.

- `SyslogReceiver`: reads RFC 6587 octet-counted frames; `stalled=True` accepts connections
  and never reads them (a receiver that hangs), `stop()`/`start()` take it away and bring it
  back on the same port.
- `HttpsReceiver`: an aiohttp server taking `application/logplex-1` POSTs; `refuse` makes it
  answer 503 (a receiver that is up but failing).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from aiohttp import web

from controlplane.drains.syslog import parse_frames


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
        if self._receiver.stalled:
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self._receiver.raw += data
        messages, self._pending = parse_frames(self._pending + data)
        self._receiver._arrived(messages)


class SyslogReceiver(_Counted):
    def __init__(self, context: ssl.SSLContext | None = None, *, stalled: bool = False) -> None:
        super().__init__()
        self.context = context
        self.stalled = stalled
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
        self._server = await loop.create_server(lambda: _SyslogProtocol(self), "127.0.0.1",
                                                self.port, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

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
        return web.Response(status=204)

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
        if runner is not None:
            await runner.cleanup()
