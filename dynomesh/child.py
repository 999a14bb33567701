"""`Child`: a process this one supervises, the one way `dynomesh up` and `dynomesh router
--workers N` run theirs.

The child runs in a session of its own, so a Ctrl-C on the terminal reaches only the
supervisor, which then stops its children in the order it wants. It also asks the kernel for
SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG): a supervisor killed with SIGKILL still
leaves nothing behind. Its stderr (and its stdout, unless it is shared as is) comes back as
lines through `on_line`. It is ready when it says so on its ready pipe (dynomesh/ready.py):
`ready()` returns the facts it announced, and proves they came from this very process where a
port answering could be another one's.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from dynomesh import ready as readiness
from dynomesh.backoff import RestartBackoff
from dynomesh.lines import LineSplitter, decode_line

_PR_SET_PDEATHSIG = 1
# Longer output lines are passed on in pieces (a supervisor relays lines, it does not judge them).
MAX_LINE_BYTES = 64 * 1024


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


def describe_exit(code: int | None) -> str:
    if code is None:
        return "no status (it did not start)"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


async def restart_pause(delay: float, stopping: asyncio.Event) -> bool:
    """Wait out a restart back-off: True once `delay` passed, False if `stopping` came first
    (the child stays down)."""
    try:
        async with asyncio.timeout(delay):
            await stopping.wait()
        return False
    except TimeoutError:
        return True


def restart_when(delay: float) -> str:
    return "now" if delay == 0 else f"in {delay:g} s"


class Child:
    def __init__(self, name: str, argv: list[str], *, on_line: Callable[[str], None],
                 env: Mapping[str, str] | None = None, capture_stdout: bool = True) -> None:
        """`on_line` gets each line of the child's stderr, and of its stdout when
        `capture_stdout` (otherwise stdout is this process's own, shared as is)."""
        self.name = name
        self.argv = argv
        self.env = env
        self.on_line = on_line
        self.capture_stdout = capture_stdout
        self.process: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._ready: asyncio.Task[dict[str, Any]] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> int:
        """Start (or start again) the process; -> its pid. OSError when it cannot be run."""
        read_end, write_end = os.pipe()
        env = dict(os.environ if self.env is None else self.env)
        env[readiness.READY_FD_ENV] = str(write_end)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.capture_stdout else None,
                stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent,
                pass_fds=(write_end,))
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # the child holds the only copy: its exit ends the pipe
        self._ready = asyncio.create_task(self._read_ready(read_end), name=f"{self.name} ready")
        self._ready.add_done_callback(_retrieve)
        streams = [self.process.stderr]
        if self.capture_stdout:
            streams.insert(0, self.process.stdout)
        self._pumps = [asyncio.create_task(self._pump(stream), name=f"{self.name} output")
                       for stream in streams]
        return self.process.pid

    async def ready(self) -> dict[str, Any]:
        """The facts this run of the child announced once ready; `ready.NotReady` when it
        closed its ready pipe (exited, mostly) without announcing."""
        if self._ready is None:
            raise RuntimeError(f"{self.name} was never started")
        # Shielded: a caller that stops waiting must not cancel the reading for the others.
        return await asyncio.shield(self._ready)

    async def wait(self) -> int | None:
        """The exit status, once the process ended and all its output was passed on (None
        for a child that could not be started)."""
        if self.process is None:
            return None
        code = await self.process.wait()
        if self._pumps:
            await asyncio.wait(self._pumps)  # unlike gather, a timeout here leaves them running
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
        return await self.wait_or_kill(timeout)

    async def wait_or_kill(self, timeout: float) -> tuple[int, bool]:
        """Wait up to `timeout` for an exit already asked for, then SIGKILL."""
        try:
            async with asyncio.timeout(timeout):
                return await self.wait(), True
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.wait(), False

    async def _read_ready(self, fd: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
        try:
            line = await reader.readline()
        except ValueError as error:  # a line past the reader's limit
            raise readiness.NotReady(f"an oversized ready line: {error}") from None
        finally:
            transport.close()
        return readiness.parse(line)

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        splitter = LineSplitter(MAX_LINE_BYTES)
        while chunk := await stream.read(65536):
            for line in splitter.feed(chunk):
                self.on_line(decode_line(line))
        for line in splitter.flush():
            self.on_line(decode_line(line))


async def keep_running(child: Child, restarts: RestartBackoff, stopping: asyncio.Event,
                       say: Callable[[str], None], *,
                       on_ready: Callable[[dict[str, Any]], None] | None = None,
                       on_exit: Callable[[], None] | None = None) -> None:
    """Keep `child` running until `stopping` is set: start it (unless it was started already),
    hand what it announces to `on_ready`, and whenever it exits, call `on_exit` and start it
    again after the back-off `restarts` asks for. Each start and exit is said through `say`."""
    again = child.process is not None
    if again:
        restarts.started()  # the caller's start counts as the first
    else:
        await _restart(child, restarts, stopping, say, again)
    while True:
        if on_ready is not None and child.running:
            try:
                on_ready(await child.ready())
            except readiness.NotReady:
                pass  # it exited before it was ready: its status follows
        code = await child.wait()
        if on_exit is not None:
            on_exit()
        if stopping.is_set():
            return
        delay = restarts.exited()
        say(f"{child.name} exited with {describe_exit(code)}; starting it again "
            f"{restart_when(delay)} (restart {restarts.failures} in a row)")
        if not await restart_pause(delay, stopping):
            return
        await _restart(child, restarts, stopping, say, True)


async def _restart(child: Child, restarts: RestartBackoff, stopping: asyncio.Event,
                   say: Callable[[str], None], again: bool) -> None:
    try:
        pid = await child.start()
    except OSError as error:
        say(f"cannot start {child.name}{' again' if again else ''}: {error}")
        return  # its last exit stands; the next back-off follows
    restarts.started()
    if stopping.is_set():
        child.signal(signal.SIGTERM)  # started just as the stop came
    elif again:
        say(f"started {child.name} again (pid {pid})")


def _retrieve(task: asyncio.Task) -> None:
    # A child that exits before it is ready, with nobody waiting: not an unhandled error.
    if not task.cancelled():
        task.exception()
