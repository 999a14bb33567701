"""`dynomesh up`'s output: every child's lines, prefixed with its name, on one stdout.

    control | dynomesh control: listening on http://127.0.0.1:5050 (store sqlite ..., revision 0)
    router  | 2026-11-26T12:00:00.123456+00:00 heroku[router]: at=info method=GET path="/" ...
    dynomgr | 2026-11-26T12:00:00.125011+00:00 hello heroku[web.1]: State changed from starting to up
    up      | router exited with status -9 (SIGKILL); restarting it now (restart 1)

The children write into pipes that only this process reads. If it stopped reading whenever its
own stdout is slow (a pager, a stalled terminal), the router's log writes and the control
plane's would stall behind it. So stdout gets a non-blocking transport that holds up to a bound,
then drops whole lines, counts them, and says how many once the reader catches up.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys

# ANSI colours for the names on a terminal (as foreman and honcho do); NO_COLOR turns them off.
_COLOURS = ("36", "33", "35", "32", "34", "31")


class _Flow(asyncio.Protocol):
    def __init__(self, output: PrefixedOutput) -> None:
        self._output = output

    def pause_writing(self) -> None:
        self._output._paused = True

    def resume_writing(self) -> None:
        self._output._resumed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._output._lost = True


class PrefixedOutput:
    def __init__(self, names: list[str], fd: int = 1, limit: int = 4 * 1024 * 1024,
                 colour: bool | None = None) -> None:
        self._fd = fd
        self._limit = limit
        self._width = max(len(n) for n in names)
        if colour is None:
            colour = os.isatty(fd) and "NO_COLOR" not in os.environ
        self._prefixes = {}
        for index, name in enumerate(names):
            label = f"{name:<{self._width}} |"
            if colour:
                label = f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{label}\x1b[0m"
            self._prefixes[name] = label
        self._transport: asyncio.WriteTransport | None = None
        self._paused = False
        self._lost = False
        self._unsaid_drops = 0
        self.dropped = 0

    async def start(self) -> None:
        if stat.S_ISREG(os.fstat(self._fd).st_mode):
            return  # a file takes writes without waiting on a reader: write directly
        # A fresh open file description, so that making it non-blocking does not change the
        # descriptor our parent (a shell) shares with us.
        try:
            fd = os.open(f"/proc/self/fd/{self._fd}", os.O_WRONLY)
        except OSError:
            fd = os.dup(self._fd)
        pipe = os.fdopen(fd, "wb", buffering=0)
        transport, _ = await asyncio.get_running_loop().connect_write_pipe(
            lambda: _Flow(self), pipe)
        transport.set_write_buffer_limits(high=self._limit, low=self._limit // 4)
        self._transport = transport

    def line(self, name: str, text: str) -> None:
        prefix = self._prefixes.get(name) or f"{name:<{self._width}} |"
        data = f"{prefix} {text}\n".encode("utf-8", "replace")
        if self._transport is None:
            try:
                os.write(self._fd, data)
            except OSError:
                self._drop()
            return
        if self._paused or self._lost:
            self._drop()
            return
        self._transport.write(data)

    def _drop(self) -> None:
        self.dropped += 1
        self._unsaid_drops += 1

    def _resumed(self) -> None:
        self._paused = False
        if self._unsaid_drops and self._transport is not None:
            count, self._unsaid_drops = self._unsaid_drops, 0
            self.line("up", f"dropped {count} lines: the reader of this output was too slow")

    async def aclose(self, timeout: float = 5.0) -> None:
        transport, self._transport = self._transport, None
        if transport is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while transport.get_write_buffer_size() and not self._lost and loop.time() < deadline:
            await asyncio.sleep(0.01)  # let a reader take what is buffered, briefly
        transport.close()


def say_early(text: str) -> None:
    """A message before the output is set up (a bad flag, a home that cannot be created)."""
    print(f"dynomesh up: {text}", file=sys.stderr, flush=True)
