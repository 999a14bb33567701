"""One part of the platform run by `dynomesh up` as `dynomesh <part> ...`: its process, its
output lines, its stop.

Each child runs in a session of its own, so a Ctrl-C on the terminal reaches only `dynomesh up`,
which then stops the children in order. Each child also asks the kernel for SIGTERM if `up`
itself dies (PR_SET_PDEATHSIG): a supervisor killed with SIGKILL still leaves no platform
behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import signal
import subprocess

from onebox.output import PrefixedOutput

_PR_SET_PDEATHSIG = 1


def _load_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: children outlive a killed supervisor there


# Looked up before any fork: the child only calls it (no dlopen between fork and exec).
_prctl = _load_prctl()


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str],
                 output: PrefixedOutput) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.output = output
        self.process: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._expected: list[tuple[re.Pattern[str], asyncio.Future[str]]] = []

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> int:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent)
        self._pumps = [asyncio.create_task(self._pump(stream), name=f"{self.name} output")
                       for stream in (self.process.stdout, self.process.stderr)]
        return self.process.pid

    def expect(self, pattern: str) -> asyncio.Future[str]:
        """A future for the next output line of this child that matches `pattern` (it proves
        the line came from this process, where a port could be answered by another one)."""
        future = asyncio.get_running_loop().create_future()
        self._expected.append((re.compile(pattern), future))
        return future

    async def wait(self) -> int:
        """The exit status, once the process ended and all its output was passed on."""
        code = await self.process.wait()
        await asyncio.gather(*self._pumps)
        return code

    def signal(self, sig: int) -> None:
        if self.running:
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass  # it exited between the check and the signal

    async def stop(self, timeout: float) -> tuple[int, bool]:
        """SIGTERM, then SIGKILL after `timeout`; -> (exit status, whether it stopped in time)."""
        if self.process is None:
            return 0, True
        self.signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                return await self.wait(), True
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.wait(), False

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        pending = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._line(line.decode("utf-8", "replace").rstrip("\r"))
        if pending:
            self._line(pending.decode("utf-8", "replace"))

    def _line(self, text: str) -> None:
        self.output.line(self.name, text)
        if self._expected:
            for entry in list(self._expected):
                pattern, future = entry
                if future.done():
                    self._expected.remove(entry)
                elif pattern.search(text):
                    future.set_result(text)
                    self._expected.remove(entry)
