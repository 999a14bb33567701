"""Launching a dyno's process and watching it: a session of its own, pipes drained at once.

The dyno's command runs as `/bin/sh -c <command>` (Heroku runs Procfile commands through a
shell, so `$PORT` expands) in a new session, so its first process's pid is also its process
group id and session id: stopping the dyno signals that group, memory sampling sums that session.

Launch cost matters when 500 dynos start at once: every fork of the agent (a Python process of
tens of MB) copies its page tables while the event loop waits, about 10 ms here. So the agent
never runs Python in a forked child. `subprocess.Popen` starts the child with vfork (no copy,
about 2 ms) and the child execs a short chain that does the privileged steps itself, as root,
before running the command as the dyno's user:

    /bin/sh -c 'echo $$ > <cgroup>/cgroup.procs; exec setpriv --reuid U --regid G --clear-groups -- /bin/sh -c "$cmd"'

The chain keeps one pid throughout, so the pid the agent knows is the dyno's first process. Where
`setpriv` (util-linux) is missing, a pre-exec function in a forked child does the same, slower.
The exit is seen through a pidfd, the output through non-blocking pipe transports: nothing here
needs a thread or a child watcher.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dynomesh.lines import LineSplitter, decode_line

from dynomgr.markers import DynoMarker
from dynomgr.users import RunAs

# Exit status of the launch chain when the dyno cannot join its cgroup.
CGROUP_JOIN_FAILED = 126


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


def launch_argv(spec: LaunchSpec, setpriv: str | None) -> tuple[list[str], Callable[[], None] | None]:
    """The argv that runs `spec`, and a pre-exec function when the exec chain cannot be used."""
    cgroup = spec.marker.cgroup
    switch = spec.run_as.switches
    if cgroup is None and not switch:
        return ["/bin/sh", "-c", spec.command], None
    if switch and setpriv is None:
        return ["/bin/sh", "-c", spec.command], _child_setup(spec)
    steps = []
    if cgroup is not None:
        steps.append(f'echo $$ > "$1" || exit {CGROUP_JOIN_FAILED}')
    if switch:
        steps.append('exec "$2" --reuid="$3" --regid="$4" --clear-groups -- /bin/sh -c "$5"')
    else:
        steps.append('exec /bin/sh -c "$5"')
    argv = [
        "/bin/sh", "-c", "; ".join(steps), "dynomgr-launch",
        str(cgroup / "cgroup.procs") if cgroup is not None else "",
        setpriv or "", str(spec.run_as.uid), str(spec.run_as.gid), spec.command,
    ]  # fmt: skip
    return argv, None


def _child_setup(spec: LaunchSpec) -> Callable[[], None]:
    marker, run_as = spec.marker, spec.run_as

    def child_setup() -> None:  # in the forked child, before exec: join the cgroup, drop root
        marker.child_setup()
        os.setgroups([])
        os.setgid(run_as.gid)
        os.setuid(run_as.uid)

    return child_setup


class _PipeLines(asyncio.Protocol):
    """One of the dyno's output pipes, read as soon as bytes arrive: a dyno never waits on its
    own logging; what happens to a line next (printed, shipped, dropped when a consumer is slow)
    is the reporter's business."""

    def __init__(self, owner: DynoProcess, max_line: int) -> None:
        self._owner = owner
        self._splitter = LineSplitter(max_line)

    def data_received(self, data: bytes) -> None:
        for raw in self._splitter.feed(data):
            self._owner.on_line(decode_line(raw))

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        for raw in self._splitter.flush():
            self._owner.on_line(decode_line(raw))
        self._owner._pipe_closed()


class DynoProcess:
    """The dyno's first process, leader of its session and process group."""

    def __init__(self, popen: subprocess.Popen, on_line: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        self._popen = popen
        self.pid: int = popen.pid
        self.on_line = on_line
        self.exited: asyncio.Future[int] = loop.create_future()  # raw return code
        self._pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open_pipes = 0
        self._transports: list[asyncio.BaseTransport] = []
        self._pidfd: int | None = None

    def _watch_exit(self) -> None:
        # A pidfd becomes readable when the process exits; then it is reaped without blocking.
        self._pidfd = os.pidfd_open(self.pid)
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)

    async def _connect_pipes(self, max_line: int) -> None:
        # Until connected, output waits in the pipe: nothing is lost.
        loop = asyncio.get_running_loop()
        for pipe in (self._popen.stdout, self._popen.stderr):
            transport, _ = await loop.connect_read_pipe(lambda: _PipeLines(self, max_line), pipe)
            self._transports.append(transport)
            self._open_pipes += 1

    def _on_exit(self) -> None:
        returncode = self._popen.poll()
        if returncode is None:
            return  # not yet reaped (a spurious wake-up); the pidfd stays readable
        self._close_pidfd()
        if not self.exited.done():
            self.exited.set_result(returncode)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _pipe_closed(self) -> None:
        self._open_pipes -= 1
        if self._open_pipes <= 0 and not self._pipes_closed.done():
            self._pipes_closed.set_result(None)

    async def output_drained(self, timeout: float) -> None:
        """Wait (a little) for the last lines after exit: pipes close once no process holds
        them, which may be never when a forgotten grandchild keeps one open."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._pipes_closed)
        except TimeoutError:
            pass  # a process outside the group holds the pipe; it is killed with the rest

    def signal_group(self, sig: int) -> bool:
        """Signal the whole process group; False when it is already empty."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        """Release the pipes and the pidfd (the process must have exited)."""
        for transport in self._transports:
            transport.close()
        self._close_pidfd()


class Spawner:
    """Starts dyno processes from a small pool of worker threads.

    `Popen` with vfork suspends its calling thread until the child has exec'd, which on a VM
    busy booting hundreds of dynos can take tens of milliseconds. CPython releases the GIL for
    that wait, so from a worker thread it costs the event loop nothing. The pre-exec fallback
    (no setpriv) runs Python in a forked child and so stays on the loop's thread: forking while
    another thread runs is unsafe.
    """

    def __init__(self, setpriv: str | None) -> None:
        self.setpriv = setpriv
        # A couple of threads: while one waits for its child to exec, another starts the next
        # (500 sleep dynos: 6.8 s with one thread, 3.8 s with two, no better with four).
        workers = min(4, max(2, os.cpu_count() or 2))
        self._thread = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dynomgr-spawn")

    def describe(self) -> str:
        return f"exec chain with {self.setpriv}" if self.setpriv else "pre-exec function"

    async def spawn(
        self,
        spec: LaunchSpec,
        on_line: Callable[[str], None],
        max_line: int,
        on_started: Callable[[DynoProcess], None] = lambda process: None,
    ) -> DynoProcess:
        """Start the process; `on_started` runs as soon as it exists, before its pipes are
        connected (a fast dyno may be listening on its port by then)."""
        argv, preexec = launch_argv(spec, self.setpriv)
        start = functools.partial(
            subprocess.Popen,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(spec.cwd),
            env=spec.env,
            start_new_session=True,
            preexec_fn=preexec,
        )
        if preexec is None:
            popen = await asyncio.get_running_loop().run_in_executor(self._thread, start)
        else:
            popen = start()
        process = DynoProcess(popen, on_line)
        try:
            process._watch_exit()
            on_started(process)
            await process._connect_pipes(max_line)
        except BaseException:
            popen.kill()
            popen.wait()
            process.close()
            raise
        return process

    def close(self) -> None:
        self._thread.shutdown(wait=False)
