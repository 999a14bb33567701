"""Launching a dyno's process and watching it: a session of its own, pipes drained at once.

The process is `/bin/sh -c <command>` (Heroku runs Procfile commands through a shell, so `$PORT`
expands). It starts in a new session, so its pid is also its process group id and its session
id: stopping the dyno signals that group, and memory sampling sums that session. Before exec the
child joins the dyno's cgroup (when markers are cgroups) and then drops to the dyno's user.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dynomgr.markers import DynoMarker
from dynomgr.output import LineSplitter, decode_line
from dynomgr.users import RunAs


@dataclass(frozen=True)
class LaunchSpec:
    command: str
    cwd: Path
    env: dict[str, str]
    run_as: RunAs
    marker: DynoMarker


def exit_status(returncode: int) -> int:
    """Shell convention, as Heroku reports it: killed by SIGTERM is `status 143`."""
    return 128 - returncode if returncode < 0 else returncode


class _DynoPipes(asyncio.SubprocessProtocol):
    def __init__(self, on_line: Callable[[str], None], max_line: int) -> None:
        loop = asyncio.get_running_loop()
        self._on_line = on_line
        self._splitters = {1: LineSplitter(max_line), 2: LineSplitter(max_line)}
        self.exited: asyncio.Future[int] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open_pipes = 2
        self._transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        for raw in self._splitters[fd].feed(data):
            self._on_line(decode_line(raw))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        splitter = self._splitters.get(fd)
        if splitter is not None:
            for raw in splitter.flush():
                self._on_line(decode_line(raw))
        self._open_pipes -= 1
        if self._open_pipes <= 0 and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(self._transport.get_returncode())


class DynoProcess:
    """The dyno's first process (`sh -c …`), leader of its session and process group."""

    def __init__(self, transport: asyncio.SubprocessTransport, pipes: _DynoPipes) -> None:
        self._transport = transport
        self._pipes = pipes
        self.pid: int = transport.get_pid()

    @property
    def exited(self) -> asyncio.Future[int]:
        """Resolves with the raw return code (negative: killed by that signal)."""
        return self._pipes.exited

    async def output_drained(self, timeout: float) -> None:
        """Wait (a little) for the last lines after exit: pipes close once no process holds
        them, which may be never when a forgotten grandchild keeps one open."""
        try:
            await asyncio.wait_for(asyncio.shield(self._pipes.pipes_closed), timeout)
        except asyncio.TimeoutError:
            pass  # a process outside the group holds the pipe; it will be killed with the rest

    def signal_group(self, sig: int) -> bool:
        """Signal the whole process group; False when it is already empty."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        self._transport.close()


async def spawn(spec: LaunchSpec, on_line: Callable[[str], None], max_line: int) -> DynoProcess:
    marker, run_as = spec.marker, spec.run_as
    switch = run_as.switches

    def child_setup() -> None:  # in the forked child, before exec
        marker.child_setup()
        if switch:
            os.setgroups([])
            os.setgid(run_as.gid)
            os.setuid(run_as.uid)

    loop = asyncio.get_running_loop()
    transport, pipes = await loop.subprocess_exec(
        lambda: _DynoPipes(on_line, max_line),
        "/bin/sh", "-c", spec.command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(spec.cwd),
        env=spec.env,
        start_new_session=True,
        preexec_fn=child_setup,
    )  # fmt: skip
    return DynoProcess(transport, pipes)


# Signals named the way Heroku's log lines name them.
SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGKILL: "SIGKILL"}
