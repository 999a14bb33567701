"""An attached one-off dyno's process: its streams are its session's, not the app's log.

With a terminal (the caller has one): the command runs on a pseudo-terminal whose slave is its
stdin, stdout and stderr and its controlling terminal, sized as the caller's; the caller's
keys (Ctrl-C included) go to the master as they are, so the terminal's line discipline turns
Ctrl-C into SIGINT for the foreground job, as on any terminal; `resize` sets the window size
(the kernel sends SIGWINCH). Without one: three pipes; a `signal` from the caller (its
Ctrl-C) goes to the dyno's process group, and its end of input closes stdin.

The process is started exactly as other dynos' (the same exec chain: cgroup, then the app's
user), so it is watched, limited and stopped the same way; only its streams differ.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct
import subprocess
import termios
from collections.abc import Callable

from dynomgr.attach import (STDERR, STDOUT, AttachSession, EndOfInput, Input, Resize, Signal)
from dynomgr.process import DynoProcess, LaunchSpec, launch_argv

READ_SIZE = 64 * 1024
DRAIN_TIMEOUT = 5.0  # seconds for the last output to reach the caller after the exit


def set_window(fd: int, columns: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def _controlling_terminal(then: Callable[[], None] | None) -> Callable[[], None]:
    def setup() -> None:  # in the child, a session leader already (start_new_session)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        if then is not None:
            then()
    return setup


async def _ready(fd: int, writing: bool) -> None:
    """Wait until `fd` can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = ((loop.add_writer, loop.remove_writer) if writing
                   else (loop.add_reader, loop.remove_reader))
    add(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        remove(fd)


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await _ready(fd, writing=True)
            continue
        view = view[written:]


class AttachedProcess(DynoProcess):
    """A one-off dyno's first process with its streams joined to its session."""

    def __init__(self, popen: subprocess.Popen, session: AttachSession, master: int | None,
                 stdin: int | None, outputs: list[tuple[int, int]]) -> None:
        super().__init__(popen, lambda line: None)
        self.session = session
        self._master = master  # the pty's master (stdin and output both), or None
        self._stdin = master if master is not None else stdin
        self._outputs = outputs  # (channel, fd) to read until EOF
        self._tasks: list[asyncio.Task] = []

    def start_pumps(self) -> None:
        self._tasks = [asyncio.create_task(self._pump_out(channel, fd), name="one-off output")
                       for channel, fd in self._outputs]
        self._tasks.append(asyncio.create_task(self._pump_in(), name="one-off input"))

    async def _pump_out(self, channel: int, fd: int) -> None:
        while True:
            await _ready(fd, writing=False)
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:  # EIO: the pty's slave side is closed by every process
                if exc.errno == errno.EIO:
                    return
                raise
            if not data:
                return
            await self.session.send_output(channel, data)

    async def _pump_in(self) -> None:
        async for event in self.session.events():
            if isinstance(event, Input) and self._stdin is not None:
                try:
                    await _write_all(self._stdin, event.data)
                except OSError:
                    self._stdin = None if self._master is None else self._stdin
            elif isinstance(event, EndOfInput):
                self._end_input()
            elif isinstance(event, Resize) and self._master is not None:
                set_window(self._master, event.columns, event.rows)
            elif isinstance(event, Signal):
                self.signal_group(event.signal)

    def _end_input(self) -> None:
        if self._master is not None:
            return  # on a terminal, end of input is a key (Ctrl-D) the caller sends as input
        if self._stdin is not None:
            os.close(self._stdin)
            self._stdin = None

    async def output_drained(self, timeout: float) -> None:
        """Wait for the output pumps to reach the end of the streams: longer than for a
        dyno's log lines, since its caller reads at the pace of a network (bounded all the
        same: a forgotten grandchild may hold the stream open)."""
        pumps = self._tasks[:len(self._outputs)]
        if pumps:
            await asyncio.wait(pumps, timeout=max(timeout, DRAIN_TIMEOUT))

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        fds = {fd for _, fd in self._outputs} | {self._master, self._stdin}
        for fd in fds - {None}:
            try:
                os.close(fd)
            except OSError:
                pass  # closed already (stdin at its end of input)
        self._outputs, self._master, self._stdin = [], None, None
        super().close()


def _nonblocking(fd: int) -> int:
    os.set_blocking(fd, False)
    return fd


async def spawn_attached(spec: LaunchSpec, setpriv: str | None, session: AttachSession,
                         tty: tuple[int, int] | None,
                         on_started: Callable[[DynoProcess], None]) -> AttachedProcess:
    """Start `spec` with its streams on a pty (`tty`: columns, rows) or on pipes."""
    argv, preexec = launch_argv(spec, setpriv)
    if tty is not None:
        master, slave = os.openpty()
        set_window(master, *tty)
        if spec.run_as.switches:  # the dyno's own terminal, as login gives a user theirs
            os.fchown(slave, spec.run_as.uid, spec.run_as.gid)
        child_fds, preexec = (slave, slave, slave), _controlling_terminal(preexec)
        ours = [master]
    else:
        in_read, in_write = os.pipe()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        child_fds = (in_read, out_write, err_write)
        ours = [in_write, out_read, err_read]
    try:
        # A forked child (a pre-exec function): one-off dynos are few, and TIOCSCTTY must be
        # called in the child, after its setsid.
        popen = subprocess.Popen(argv, stdin=child_fds[0], stdout=child_fds[1],
                                 stderr=child_fds[2], cwd=str(spec.cwd), env=spec.env,
                                 start_new_session=True, preexec_fn=preexec)
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in set(child_fds):
            os.close(fd)
    for fd in ours:
        _nonblocking(fd)
    if tty is not None:
        process = AttachedProcess(popen, session, master, None, [(STDOUT, master)])
    else:
        process = AttachedProcess(popen, session, None, in_write,
                                  [(STDOUT, out_read), (STDERR, err_read)])
    try:
        process._watch_exit(os.pidfd_open(popen.pid))
        on_started(process)
        process.start_pumps()
    except BaseException:
        popen.kill()
        popen.wait()
        process.close()
        raise
    return process
