"""`NonBlockingWriter`: lines to stdout (or any descriptor) that never block the event loop.

Whoever reads our stdout may be slow: a pager, a stalled terminal, a full pipe. The dyno
manager's event loop runs every dyno, and `dynomesh up` reads every child's output; neither may
wait for that reader. Pipes, terminals and sockets get a non-blocking transport whose buffer may
grow to `limit` bytes; past that, lines are dropped and counted, and once the reader catches up
a notice says how many. Regular files (and /dev/null) are written directly: the kernel takes
those writes without waiting on any reader.

Closing hands what is buffered to the transport's own close, which flushes it and then reports
the connection lost: `aclose` awaits that (bounded), it does not poll the buffer.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from typing import Callable


class _Flow(asyncio.Protocol):
    """The transport's flow-control calls, passed on to the writer."""

    def __init__(self, writer: NonBlockingWriter, closed: asyncio.Future[None]) -> None:
        self._writer = writer
        self._closed = closed

    def pause_writing(self) -> None:
        self._writer._paused = True

    def resume_writing(self) -> None:
        self._writer._resumed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._writer._lost = True
        if not self._closed.done():
            self._closed.set_result(None)


class NonBlockingWriter:
    def __init__(self, fd: int, limit: int, *, drop_notice: Callable[[int], str],
                 on_drop: Callable[[int], None] = lambda n: None,
                 name: str = "dynomesh") -> None:
        """`drop_notice(n)` words the line that says n lines were dropped; `on_drop(1)` is
        called for each dropped line (a metric); `name` starts a complaint on stderr."""
        self._fd = fd
        self._limit = limit
        self._drop_notice = drop_notice
        self._on_drop = on_drop
        self._name = name
        self._transport: asyncio.WriteTransport | None = None
        self._closed: asyncio.Future[None] | None = None
        self._paused = False
        self._lost = False
        self._unsaid_drops = 0
        self.dropped = 0

    async def start(self) -> None:
        if stat.S_ISREG(os.fstat(self._fd).st_mode):
            return  # a file takes writes without waiting on a reader: write directly
        # A fresh open file description of the same pipe or terminal, so that making it
        # non-blocking does not change the descriptor our parent (a shell) shares with us.
        try:
            fd = os.open(f"/proc/self/fd/{self._fd}", os.O_WRONLY)
        except OSError:
            fd = os.dup(self._fd)  # sockets cannot be reopened
        pipe = os.fdopen(fd, "wb", buffering=0)
        loop = asyncio.get_running_loop()
        closed = loop.create_future()
        transport, _ = await loop.connect_write_pipe(lambda: _Flow(self, closed), pipe)
        transport.set_write_buffer_limits(high=self._limit, low=self._limit // 4)
        self._transport, self._closed = transport, closed

    def write_line(self, text: str) -> None:
        data = text.encode("utf-8", "replace") + b"\n"
        if self._transport is None:
            self._write_direct(data)
        elif self._paused or self._lost:
            self._drop()
        else:
            self._transport.write(data)

    def _write_direct(self, data: bytes) -> None:
        try:
            os.write(self._fd, data)
        except BlockingIOError:
            self._drop()
        except OSError as exc:
            # The output is gone (a closed pipe): nothing else can be done with the line.
            self._drop()
            if not self._lost:
                self._lost = True
                print(f"{self._name}: cannot write output: {exc}", file=sys.stderr)

    def _drop(self) -> None:
        self.dropped += 1
        self._unsaid_drops += 1
        self._on_drop(1)

    def _resumed(self) -> None:
        self._paused = False
        if self._transport is not None:
            self._say_drops(self._transport)

    def _say_drops(self, transport: asyncio.WriteTransport) -> None:
        if self._unsaid_drops and not self._lost:
            count, self._unsaid_drops = self._unsaid_drops, 0
            transport.write(self._drop_notice(count).encode("utf-8", "replace") + b"\n")

    async def aclose(self, timeout: float = 5.0) -> None:
        """Give a reader up to `timeout` to take what is buffered; a reader that is gone (or
        too slow) loses it."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        self._say_drops(transport)  # the last word, even if the reader never caught up
        transport.close()  # flushes the buffer, then calls connection_lost
        try:
            async with asyncio.timeout(timeout):
                await self._closed
        except TimeoutError:
            transport.abort()
