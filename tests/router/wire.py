"""HTTP/1.1 on the wire for tests: a small independent reader of messages, raw clients, and
scripted raw-TCP backends (dynos) that record what they receive.

Independent of the router's own parser on purpose: a test that used httptools on both ends
could not catch a framing bug that httptools tolerates.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Message:
    start: bytes  # request line or status line
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunked: bool = False
    raw_head: bytes = b""

    def all(self, name: str) -> list[bytes]:
        key = name.lower().encode()
        return [v for n, v in self.headers if n.lower() == key]

    def get(self, name: str) -> bytes | None:
        values = self.all(name)
        return values[0] if values else None

    @property
    def status(self) -> int:
        return int(self.start.split(b" ")[1])

    @property
    def method(self) -> bytes:
        return self.start.split(b" ")[0]

    @property
    def target(self) -> bytes:
        return self.start.split(b" ")[1]


async def read_head(reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name, value.strip()))
    return lines[0], headers, raw


async def read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            break
        body += await reader.readexactly(size)
        assert await reader.readexactly(2) == b"\r\n", "chunk not followed by CRLF"
    trailers = []
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            return bytes(body), trailers
        name, _, value = line[:-2].partition(b":")
        trailers.append((name, value.strip()))


async def read_message(reader: asyncio.StreamReader, *, response: bool,
                       head_request: bool = False) -> Message:
    """One message; for responses, a body without length runs to EOF (RFC 9112 §6.3)."""
    start, headers, raw = await read_head(reader)
    message = Message(start, headers, raw_head=raw)
    if response and (head_request or message.status in (204, 304) or message.status < 200):
        return message
    te = message.get("Transfer-Encoding")
    length = message.get("Content-Length")
    if te is not None and b"chunked" in te.lower():
        message.chunked = True
        message.body, message.trailers = await read_chunked(reader)
    elif length is not None:
        message.body = await reader.readexactly(int(length))
    elif response:
        message.body = await reader.read()  # until the connection closes
    return message


async def read_response(reader: asyncio.StreamReader, head_request: bool = False) -> Message:
    return await read_message(reader, response=True, head_request=head_request)


async def read_request(reader: asyncio.StreamReader) -> Message:
    return await read_message(reader, response=False)


class RawClient:
    """A client connection that writes exactly the bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RawClient:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 24)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, method: str = "GET", target: str = "/", host: str | None = None,
                      headers: list[tuple[str, str]] = (), body: bytes | None = None,
                      version: str = "1.1") -> Message:
        await self.send(build_request(method, target, host, headers, body, version))
        return await read_response(self.reader, head_request=method == "HEAD")

    async def response(self, head_request: bool = False) -> Message:
        return await read_response(self.reader, head_request=head_request)

    async def closed(self) -> bool:
        """True once the router has closed the connection (EOF, nothing more to read)."""
        return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass  # the router may have closed first; either way the connection is gone


def build_request(method: str = "GET", target: str = "/", host: str | None = None,
                  headers: list[tuple[str, str]] = (), body: bytes | None = None,
                  version: str = "1.1") -> bytes:
    lines = [f"{method} {target} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in headers]
    if body is not None and not any(n.lower() in ("content-length", "transfer-encoding")
                                     for n, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def response_bytes(status: int = 200, body: bytes = b"Hello, world!",
                   headers: list[tuple[str, str]] = (), reason: str = "OK",
                   length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{n}: {v}" for n, v in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Dyno:
    """A scripted raw-TCP backend on a free loopback port.

    `handler(dyno, reader, writer)` runs once per accepted connection; the default answers
    every request with 200 "Hello, world!" (keep-alive). Every request read through
    `dyno.next_request` is recorded in `requests`; `connections` counts accepted connections.
    """

    def __init__(self, name: str = "web.1", handler=None) -> None:
        self.name = name
        self.handler = handler or echo_handler
        self.requests: list[Message] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.received = asyncio.Condition()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> Dyno:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0, limit=1 << 24)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self.handler(self, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the router closed this connection; that is the end of the script
        finally:
            self._tasks.discard(task)
            writer.close()

    async def next_request(self, reader: asyncio.StreamReader) -> Message:
        request = await read_request(reader)
        async with self.received:
            self.requests.append(request)
            self.received.notify_all()
        return request

    async def wait_requests(self, count: int) -> None:
        async with self.received:
            await self.received.wait_for(lambda: len(self.requests) >= count)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self._tasks):
                task.cancel()
            await self.server.wait_closed()


async def echo_handler(dyno: Dyno, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    """Answer each request with 200 and a body naming the dyno, the request target and body."""
    while True:
        request = await dyno.next_request(reader)
        body = b"%s %s %s" % (dyno.name.encode(), request.target, request.body)
        writer.write(response_bytes(body=body, headers=[("Content-Type", "text/plain")]))
        await writer.drain()


async def send_bytes(writer: asyncio.StreamWriter, data: bytes, bytewise: bool = False) -> None:
    """Write `data` whole, or one byte per write, giving the loop a turn after each byte so a
    server on the same loop reads them one by one. Stops quietly if the peer hangs up."""
    try:
        if not bytewise:
            writer.write(data)
            await writer.drain()
            return
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0)
    except (ConnectionError, OSError):
        pass  # the server closed early; what it answered is still readable
