"""`dynomesh up`'s output: every child's lines, prefixed with its name, on one stdout.

    control | dynomesh control: listening on http://127.0.0.1:5050 (store sqlite ..., revision 0)
    router  | 2026-11-26T12:00:00.123456+00:00 heroku[router]: at=info method=GET path="/" ...
    dynomgr | 2026-11-26T12:00:00.125011+00:00 hello heroku[web.1]: State changed from starting to up
    up      | router exited with status -9 (SIGKILL); restarting it now (restart 1)

The children write into pipes that only this process reads. If it stopped reading whenever its
own stdout is slow (a pager, a stalled terminal), the router's log writes and the control
plane's would stall behind it. So stdout is a `dynomesh.writer.NonBlockingWriter`: it holds up
to a bound, then drops whole lines, counts them, and says how many once the reader catches up.
"""

from __future__ import annotations

import os
import sys

from dynomesh.writer import NonBlockingWriter

# ANSI colours for the names on a terminal (as foreman and honcho do); NO_COLOR turns them off.
_COLOURS = ("36", "33", "35", "32", "34", "31")


class PrefixedOutput:
    def __init__(self, names: list[str], fd: int = 1, limit: int = 4 * 1024 * 1024,
                 colour: bool | None = None) -> None:
        self._width = max(len(n) for n in names)
        if colour is None:
            colour = os.isatty(fd) and "NO_COLOR" not in os.environ
        self._prefixes = {}
        for index, name in enumerate(names):
            label = f"{name:<{self._width}} |"
            if colour:
                label = f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{label}\x1b[0m"
            self._prefixes[name] = label
        self._writer = NonBlockingWriter(fd, limit, drop_notice=self._drop_notice,
                                         name="dynomesh up")

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    async def start(self) -> None:
        await self._writer.start()

    def line(self, name: str, text: str) -> None:
        self._writer.write_line(self._prefixed(name, text))

    def _prefixed(self, name: str, text: str) -> str:
        return f"{self._prefixes.get(name) or f'{name:<{self._width}} |'} {text}"

    def _drop_notice(self, count: int) -> str:
        return self._prefixed("up", f"dropped {count} lines: the reader of this output was too slow")

    async def aclose(self, timeout: float = 5.0) -> None:
        await self._writer.aclose(timeout)


def say_early(text: str) -> None:
    """A message before the output is set up (a bad flag, a home that cannot be created)."""
    print(f"dynomesh up: {text}", file=sys.stderr, flush=True)
