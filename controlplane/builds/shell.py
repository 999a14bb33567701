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

from controlplane.builds.buildpack import BuildFailed, Ran, indented

TAIL_LINES = 40
_LINE_LIMIT = 1024 * 1024  # a longer line without a newline fails the build
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
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        child = await asyncio.create_subprocess_exec(
            *self.user.prefix(), *argv, cwd=cwd, env={**self._env, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, limit=_LINE_LIMIT)
        self._running = child
        try:
            while raw := await _line(child.stdout):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                tail.append(line)
                if echo:
                    self._say(indented(line))
            status = await child.wait()
        finally:
            if child.returncode is None:
                self._kill(child)
                await child.wait()
            self._running = None
        return Ran(status, tuple(tail))

    async def run_to_file(self, argv: Sequence[str], *, cwd: Path, target: Path) -> Ran:
        """Run a command whose stdout is data (a slug): it goes into `target`, which this
        process opens, so the command never names where it writes."""
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        with open(target, "wb") as out:
            child = await asyncio.create_subprocess_exec(
                *self.user.prefix(), *argv, cwd=cwd, env=self._env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, limit=_LINE_LIMIT)
            self._running = child
            try:
                while raw := await _line(child.stderr):
                    tail.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
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


async def _line(stream: asyncio.StreamReader) -> bytes:
    try:
        return await stream.readline()
    except ValueError:  # asyncio's LimitOverrunError, wrapped
        raise BuildFailed("a build command printed a line longer than "
                          f"{_LINE_LIMIT // 1024} KiB without a newline") from None
