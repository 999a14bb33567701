"""Commands of a build, run as the build user with a fixed environment, their output streamed.

The control plane may run as root; a build runs the app's own code (a package's setup.py), so
every command runs as an unprivileged user (`setpriv`, as the dyno manager starts dynos), in
its own session so that the time limit can end it and everything it started. Nothing of the
control plane's environment leaks in: pip's configuration files are off (`PIP_CONFIG_FILE=
/dev/null`: only the platform's pip options count, so builds are the same on every node).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from dynomesh.lines import LineSplitter, decode_line
from controlplane.builds.buildpack import Ran, indented

TAIL_LINES = 40
_LINE_LIMIT = 1024 * 1024  # a longer line comes out in pieces (the output keeps 4 KiB of each)
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class BuildUser:
    uid: int
    gid: int
    name: str

    @property
    def switches(self) -> bool:
        return self.uid != os.geteuid()

    def prefix(self) -> list[str]:
        """The argv that runs a command as this user and dies with the control plane
        (`--pdeathsig`: a control plane killed mid-build leaves no pip running on)."""
        setpriv = shutil.which("setpriv", path=_SBIN_PATH)
        if setpriv is None:
            if self.switches:
                raise OSError("setpriv (util-linux) is needed to run builds as "
                              f"{self.name}; install util-linux")
            return []
        switch = ([f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
                  if self.switches else [])
        return [setpriv, *switch, "--pdeathsig=KILL", "--"]


def current_user() -> BuildUser:
    entry = pwd.getpwuid(os.geteuid())
    return BuildUser(entry.pw_uid, os.getegid(), entry.pw_name)


class BuildShell:
    """Runs one build's commands; `kill()` ends whichever is running (time limit, shutdown)."""

    def __init__(self, user: BuildUser, say: Callable[[str], None], *, home: Path) -> None:
        self.user = user
        self._say = say
        self._env = {"PATH": PATH, "HOME": str(home), "LANG": "C.UTF-8",
                     "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                     "PIP_NO_INPUT": "1", "PYTHONUNBUFFERED": "1"}
        self._running: asyncio.subprocess.Process | None = None

    async def run(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None,
                  echo: bool = True) -> Ran:
        """Run a command, its output (stdout and stderr) said as indented lines if `echo`."""
        child = await self._spawn(argv, cwd, {**self._env, **(env or {})},
                                  asyncio.subprocess.PIPE, asyncio.subprocess.STDOUT)
        say = (lambda line: self._say(indented(line))) if echo else (lambda line: None)
        return await self._watch(child, child.stdout, say)

    async def run_to_file(self, argv: Sequence[str], *, cwd: Path, target: Path) -> Ran:
        """Run a command whose stdout is data (a slug): it goes into `target`, which this
        process opens, so the command never names where it writes."""
        with open(target, "wb") as out:
            child = await self._spawn(argv, cwd, self._env, out, asyncio.subprocess.PIPE)
            return await self._watch(child, child.stderr, lambda line: None)

    async def _spawn(self, argv: Sequence[str], cwd: Path, env: dict[str, str], stdout,
                     stderr) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.user.prefix(), *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout, stderr=stderr, start_new_session=True)

    async def _watch(self, child: asyncio.subprocess.Process, stream: asyncio.StreamReader,
                     on_line: Callable[[str], None]) -> Ran:
        """Read the child's text lines to their end, then its status; a child still running
        when this ends (a time limit, a shutdown) is killed with all it started."""
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._running = child
        try:
            splitter = LineSplitter(_LINE_LIMIT)
            while True:
                chunk = await stream.read(65536)
                for raw in splitter.feed(chunk) if chunk else splitter.flush():
                    line = decode_line(raw)
                    tail.append(line)
                    on_line(line)
                if not chunk:
                    break
            status = await child.wait()
        finally:
            if child.returncode is None:
                self._kill(child)
                await child.wait()
            self._running = None
        return Ran(status, tuple(tail))

    def kill(self) -> None:
        if self._running is not None and self._running.returncode is None:
            self._kill(self._running)

    @staticmethod
    def _kill(child: asyncio.subprocess.Process) -> None:
        try:
            os.killpg(child.pid, signal.SIGKILL)  # its session: pip and whatever pip started
        except ProcessLookupError:
            pass  # already gone
