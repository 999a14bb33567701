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
The exit is seen through a pidfd, the output through non-blocking transports on the life's two
output FIFOs, stdout and stderr (which outlive the agent: `outputfifo.py`), each with its own line
splitter as with plain pipes, so an unfinished stdout line never swallows a stderr line: nothing
here needs a thread or a child watcher. A process a previous agent left running is watched the
same way (`AdoptedProcess`).

The process group is signalled by the first process's pid, which is only safe while that pid
names our process: see `WatchedProcess.signal_group`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from dynomesh.lines import LineSplitter, decode_line

from dynomgr import outputfifo, procscan
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
    outputs: tuple[Path, Path]  # the life's stdout and stderr FIFOs (dynomgr/outputfifo.py)


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
    """The dyno's output FIFO, read as soon as bytes arrive: a dyno never waits on its own
    logging; what happens to a line next (printed, shipped, dropped when a consumer is slow)
    is the reporter's business."""

    def __init__(self, owner: WatchedProcess, max_line: int, tail: bytes = b"") -> None:
        self._owner = owner
        self._splitter = LineSplitter(max_line)
        self.detached = False
        for raw in self._splitter.feed(tail):  # a line the previous agent had begun reading
            owner.on_line(decode_line(raw))  # (a held tail is unfinished; this is a safeguard)

    def data_received(self, data: bytes) -> None:
        for raw in self._splitter.feed(data):
            self._owner.on_line(decode_line(raw))

    def eof_received(self) -> bool:
        return False  # close the transport

    def held(self) -> bytes:
        return self._splitter.held()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.detached:  # a detached reader's unfinished line goes to the next agent
            for raw in self._splitter.flush():
                self._owner.on_line(decode_line(raw))
        self._owner._pipe_closed()


class WatchedProcess:
    """A dyno's first process, leader of its session and process group: its exit seen through
    a pidfd, its output through the FIFOs (dynomgr/outputfifo.py)."""

    def __init__(self, pid: int, start_ticks: int | None, on_line: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        self.pid = pid
        self.start_ticks = start_ticks  # with the pid, names this one process (procscan.py)
        self.on_line = on_line
        # The raw return code; None when it cannot be known (a process this agent adopted).
        self.exited: asyncio.Future[int | None] = loop.create_future()
        self._pipes_closed: asyncio.Future[None] = loop.create_future()
        self._readers: list[tuple[asyncio.ReadTransport, _PipeLines]] = []
        self._open_pipes = 0
        self._pidfd: int | None = None

    def _watch_exit(self, pidfd: int) -> None:
        # A pidfd becomes readable when the process exits, child or not (pidfd_open(2)).
        self._pidfd = pidfd
        asyncio.get_running_loop().add_reader(pidfd, self._on_exit)

    def _on_exit(self) -> None:
        raise NotImplementedError

    def _exited(self, returncode: int | None) -> None:
        self._close_pidfd()
        if not self.exited.done():
            self.exited.set_result(returncode)

    async def _connect_output(self, pipe: BinaryIO, max_line: int, tail: bytes = b"") -> None:
        # Until connected, output waits in the FIFO: nothing is lost. The caller closes `pipe`
        # if this fails (closing a file object twice is harmless).
        loop = asyncio.get_running_loop()
        transport, lines = await loop.connect_read_pipe(lambda: _PipeLines(self, max_line, tail), pipe)
        self._readers.append((transport, lines))
        self._open_pipes += 1

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
        if not self._readers:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._pipes_closed)
        except TimeoutError:
            pass  # a process outside the group holds the pipe; it is killed with the rest

    def signal_group(self, sig: int) -> bool:
        """Signal the whole process group; False when it is already empty, or when the pid
        now names another process (whose group is a stranger's: nothing is sent)."""
        if not self._names_our_group():
            return False
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _names_our_group(self) -> bool:
        # A pid number stays taken while any process has it as its process group id
        # (POSIX, XBD "Process ID Reuse"), so while our group has members the number cannot be handed to a
        # new process. Once it names a process with another start time, our group is empty
        # and the number was reused: killpg would reach the new owner's group.
        if self.start_ticks is None:
            return False  # never known to be ours
        stat = procscan.read_stat(self.pid)
        return stat is None or stat.start_ticks == self.start_ticks

    def held(self) -> tuple[bytes, ...]:
        """The unfinished line read so far on each output, which a next reader must start with."""
        return tuple(lines.held() for _, lines in self._readers)

    def detach(self) -> None:
        """Stop reading and watching, leaving the process running (the agent hands it over);
        the unfinished lines (`held()`) are left unsaid."""
        for _, lines in self._readers:
            lines.detached = True
        self.close()

    def close(self) -> None:
        """Release the FIFOs' read ends and the pidfd."""
        for transport, _ in self._readers:
            transport.close()
        self._close_pidfd()


class DynoProcess(WatchedProcess):
    """A process this agent started (its child: the exit status is known)."""

    def __init__(self, popen: subprocess.Popen, on_line: Callable[[str], None]) -> None:
        stat = procscan.read_stat(popen.pid)  # our unreaped child: its pid cannot be reused yet
        super().__init__(popen.pid, stat.start_ticks if stat else None, on_line)
        self._popen = popen

    def _names_our_group(self) -> bool:
        if self._popen.returncode is None:
            return True  # not reaped: the pid is still our child's, zombie or not
        return super()._names_our_group()

    def _on_exit(self) -> None:
        returncode = self._popen.poll()
        if returncode is None:
            return  # not yet reaped (a spurious wake-up); the pidfd stays readable
        self._exited(returncode)


class AdoptedProcess(WatchedProcess):
    """A process a previous agent started and left running: not our child, so its exit status
    goes to whoever reaps it (init), and `exited` resolves to None."""

    def _on_exit(self) -> None:
        self._exited(None)

    @classmethod
    def watch(cls, pid: int, start_ticks: int, on_line: Callable[[str], None]) -> AdoptedProcess:
        """Watch `pid` if it is still the process started at `start_ticks`; a process found
        gone, or a reused pid (another process), comes back already exited, and since its pid
        is not ours, `signal_group` sends nothing through it."""
        process = cls(pid, start_ticks, on_line)
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            process._exited(None)
            return process
        stat = procscan.read_stat(pid)  # after pidfd_open: the pidfd now pins this process
        if stat is None or stat.zombie or stat.start_ticks != start_ticks:
            os.close(pidfd)
            process._exited(None)
            return process
        process._watch_exit(pidfd)
        return process

    async def read_outputs(self, outputs: Iterable[tuple[Path, bytes]], max_line: int) -> None:
        """Go on reading the FIFOs the previous agent read, each starting with its unfinished
        line; raises OSError (a FIFO removed, no descriptors left), leaving what was connected
        connected: the caller stops the dyno, whose output nobody could read otherwise."""
        for fifo, tail in outputs:
            pipe = open(outputfifo.reopen(fifo), "rb", buffering=0)
            try:
                await self._connect_output(pipe, max_line, tail)
            except BaseException:
                pipe.close()
                raise


def exit_text(returncode: int | None) -> str:
    """How a dyno's end is told in its log (Heroku: `Process exited with status 143`)."""
    if returncode is None:
        return "Process exited (status unknown: it was started by a previous dyno manager)"
    return f"Process exited with status {exit_status(returncode)}"


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
        # Two FIFOs, as there were two pipes: each stream is split into lines on its own.
        out_read, out_fd = outputfifo.create(spec.outputs[0])
        try:
            err_read, err_fd = outputfifo.create(spec.outputs[1])
        except OSError:
            os.close(out_read)
            os.close(out_fd)
            spec.outputs[0].unlink(missing_ok=True)
            raise
        start = functools.partial(
            subprocess.Popen,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out_fd,
            stderr=err_fd,
            cwd=str(spec.cwd),
            env=spec.env,
            start_new_session=True,
            preexec_fn=preexec,
        )
        pipes = [open(out_read, "rb", buffering=0), open(err_read, "rb", buffering=0)]
        try:
            if preexec is None:
                popen = await asyncio.get_running_loop().run_in_executor(self._thread, start)
            else:
                popen = start()
        except BaseException:
            for pipe, path in zip(pipes, spec.outputs):
                pipe.close()
                path.unlink(missing_ok=True)
            raise
        finally:
            os.close(out_fd)  # the dyno holds its own copies
            os.close(err_fd)
        process = DynoProcess(popen, on_line)
        try:
            process._watch_exit(os.pidfd_open(popen.pid))
            on_started(process)
            for pipe in pipes:
                await process._connect_output(pipe, max_line)
        except BaseException:
            for pipe in pipes:
                pipe.close()
            popen.kill()
            popen.wait()
            process.close()
            raise
        return process

    def close(self) -> None:
        self._thread.shutdown(wait=False)
