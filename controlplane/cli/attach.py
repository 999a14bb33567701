"""The CLI's end of an attached one-off dyno's session (docs/attach.md).

With a terminal on both stdin and stdout, the terminal is put in raw mode for the session:
every key, Ctrl-C and Ctrl-D included, goes to the dyno's own pseudo-terminal as it is, and a
window size change (SIGWINCH) is sent as `resize`; the terminal is restored however the
session ends. Without one, stdin is streamed until its end (then `eof`), and Ctrl-C (SIGINT
to this process) is sent to the dyno as a `signal`, so the dyno decides what it means.
The session's result is the command's exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import termios
import tty
from collections.abc import Iterator

import aiohttp

STDIN, STDOUT, STDERR = 0, 1, 2
READ_SIZE = 64 * 1024


def terminal_size() -> tuple[int, int]:
    """The terminal's own size, asked of the terminal: COLUMNS/LINES in the environment are a
    snapshot that a window resize does not update (shutil prefers them), so they are only the
    fallback when no terminal answers."""
    for fd in (STDOUT, STDIN):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.columns and size.lines:
            return size.columns, size.lines
    size = shutil.get_terminal_size()
    return size.columns, size.lines


def has_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode for the session; the old mode comes back whatever happens."""
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: keys typed ahead go to the dyno too
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Ended(Exception):
    """The session ended without the command's status; the message says why."""


class CallerSession:
    """Streams between this process's stdin/stdout/stderr and the dyno, until it exits."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, terminal: bool) -> None:
        self._ws = ws
        self._terminal = terminal
        self._loop = asyncio.get_running_loop()
        self._pending: set[asyncio.Task] = set()

    def _send(self, coroutine) -> None:
        task = self._loop.create_task(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _control(self, body: dict) -> None:
        if not self._ws.closed:
            self._send(self._ws.send_str(json.dumps(body)))

    def _on_stdin(self) -> None:
        try:
            data = os.read(STDIN, READ_SIZE)
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(STDIN)
        self._stdin_read(data)

    def _stdin_read(self, data: bytes) -> None:
        if not data:
            if not self._terminal:
                self._control({"op": "eof"})
            return
        if not self._ws.closed:
            self._send(self._ws.send_bytes(bytes([STDIN]) + data))

    async def _read_file_stdin(self) -> None:
        """stdin that the event loop cannot watch (a file, /dev/null): read in a thread, each
        piece sent before the next is read (a large file is not held in memory)."""
        while not self._ws.closed:
            try:
                data = await self._loop.run_in_executor(None, os.read, STDIN, READ_SIZE)
            except OSError:
                data = b""
            if not data:
                if not self._terminal:
                    await self._ws.send_str(json.dumps({"op": "eof"}))
                return
            await self._ws.send_bytes(bytes([STDIN]) + data)

    def _on_resize(self) -> None:
        columns, rows = terminal_size()
        self._control({"op": "resize", "cols": columns, "rows": rows})

    def _on_interrupt(self) -> None:
        self._control({"op": "signal", "name": "INT"})

    async def run(self) -> int:
        """The command's exit status; raises Ended when the session ends without one."""
        try:
            self._loop.add_reader(STDIN, self._on_stdin)
        except PermissionError:  # epoll refuses regular files and /dev/null
            self._send(self._read_file_stdin())
        if self._terminal:
            self._loop.add_signal_handler(signal.SIGWINCH, self._on_resize)
        else:
            self._loop.add_signal_handler(signal.SIGINT, self._on_interrupt)
        try:
            return await self._receive()
        finally:
            self._loop.remove_reader(STDIN)
            self._loop.remove_signal_handler(signal.SIGWINCH if self._terminal
                                             else signal.SIGINT)
            for task in list(self._pending):
                task.cancel()

    async def _receive(self) -> int:
        async for message in self._ws:
            if message.type is aiohttp.WSMsgType.BINARY:
                channel, data = message.data[:1], message.data[1:]
                _write(STDERR if channel == bytes([STDERR]) else STDOUT, data)
            elif message.type is aiohttp.WSMsgType.TEXT:
                body = json.loads(message.data)
                if body.get("op") == "exit":
                    if body.get("status") is None:
                        raise Ended(body.get("reason") or "the dyno ended without a status")
                    return int(body["status"])
                if body.get("op") == "error":
                    raise Ended(body.get("message") or "the session failed")
        raise Ended("the connection to the control plane closed before the command ended")
