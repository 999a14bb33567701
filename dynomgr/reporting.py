"""Reporters: where state changes and log lines go.

Standalone, the `StdoutReporter` prints Heroku-format lines, one per event, prefixed with the app:

    2026-11-26T12:00:00.123456+00:00 hello heroku[web.1]: State changed from starting to up (127.0.0.1:20345)
    2026-11-26T12:00:00.125011+00:00 hello app[web.1]: listening on 20345

Whoever reads stdout may be slow (a pager, a stalled pipe). A dyno must never wait for that, and
neither may the agent's event loop, so output goes through a `NonBlockingWriter` that holds up
to a bound and then drops lines, counts them, and says how many once the reader catches up.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from typing import Callable

from dynomesh import logline

from dynomgr.events import LogLine, StateChange


class _PipeFlow(asyncio.Protocol):
    def __init__(self, writer: NonBlockingWriter) -> None:
        self._writer = writer

    def pause_writing(self) -> None:
        self._writer._paused = True

    def resume_writing(self) -> None:
        self._writer._resumed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._writer._lost = True


class NonBlockingWriter:
    """Line output to a file descriptor that never blocks the event loop.

    Pipes, terminals and sockets get a non-blocking transport whose buffer may grow to `limit`
    bytes; past that, lines are dropped and counted. Regular files (and /dev/null) are written
    directly: the kernel takes those writes without waiting on any reader.
    """

    def __init__(self, fd: int, limit: int, on_drop: Callable[[int], None] = lambda n: None) -> None:
        self._fd = fd
        self._limit = limit
        self._on_drop = on_drop
        self._transport: asyncio.WriteTransport | None = None
        self._paused = False
        self._lost = False
        self._dropped_since_notice = 0
        self.dropped = 0

    async def start(self) -> None:
        mode = os.fstat(self._fd).st_mode
        if stat.S_ISREG(mode):
            return
        # A fresh open file description of the same pipe or terminal, so that making it
        # non-blocking does not change the descriptor our parent (a shell) shares.
        try:
            fd = os.open(f"/proc/self/fd/{self._fd}", os.O_WRONLY)
        except OSError:
            fd = os.dup(self._fd)  # sockets cannot be reopened
        pipe = os.fdopen(fd, "wb", buffering=0)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_write_pipe(lambda: _PipeFlow(self), pipe)
        transport.set_write_buffer_limits(high=self._limit, low=self._limit // 4)
        self._transport = transport

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace") + b"\n"
        if self._transport is None:
            self._write_direct(data)
            return
        if self._paused or self._lost:
            self._drop()
            return
        self._transport.write(data)

    def _write_direct(self, data: bytes) -> None:
        try:
            os.write(self._fd, data)
        except BlockingIOError:
            self._drop()
        except OSError as exc:
            # stdout gone (closed pipe): nothing else can be done with the line; count it.
            self._drop()
            if not self._lost:
                self._lost = True
                print(f"dynomgr: cannot write log output: {exc}", file=sys.stderr)

    def _drop(self) -> None:
        self.dropped += 1
        self._dropped_since_notice += 1
        self._on_drop(1)

    def _resumed(self) -> None:
        self._paused = False
        if self._dropped_since_notice and self._transport is not None:
            count, self._dropped_since_notice = self._dropped_since_notice, 0
            notice = logline.line(
                "dynomgr", "logs", f"Dropped {count} log lines: the reader of this output was too slow"
            )
            self._transport.write(notice.encode() + b"\n")

    async def aclose(self, timeout: float = 5.0) -> None:
        transport, self._transport = self._transport, None
        if transport is None:
            return
        # Give a reader a moment to take what is buffered; a reader that is gone loses it.
        deadline = asyncio.get_running_loop().time() + timeout
        while transport.get_write_buffer_size() and not self._lost:
            if asyncio.get_running_loop().time() > deadline:
                transport.abort()
                return
            await asyncio.sleep(0.01)
        transport.close()


class StdoutReporter:
    """Heroku's log format on a non-blocking writer; the reporter of a standalone agent."""

    def __init__(self, writer: NonBlockingWriter) -> None:
        self._writer = writer

    def state_changed(self, change: StateChange) -> None:
        ref = change.dyno
        self._writer.write(f"{logline.rfc5424_timestamp(change.at)} {ref.app} heroku[{ref.name}]: {change.message()}")

    def log(self, line: LogLine) -> None:
        ref = line.dyno
        self._writer.write(f"{logline.rfc5424_timestamp(line.at)} {ref.app} {line.source}[{ref.name}]: {line.text}")

    async def aclose(self) -> None:
        await self._writer.aclose()


class FanoutReporter:
    """Several reporters at once (stdout and the control plane)."""

    def __init__(self, *reporters) -> None:
        self._reporters = reporters

    def state_changed(self, change: StateChange) -> None:
        for reporter in self._reporters:
            reporter.state_changed(change)

    def log(self, line: LogLine) -> None:
        for reporter in self._reporters:
            reporter.log(line)

    async def aclose(self) -> None:
        for reporter in self._reporters:
            await reporter.aclose()
