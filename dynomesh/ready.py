"""Telling a supervising parent "I am ready", in a form made for machines.

A supervisor (`dynomesh up`, `dynomesh router --workers N`) needs to know when a child it
started is serving, and a few facts only the child knows (the port it bound for `:0`, its admin
address). The child's ready line on stdout or stderr is for people and may change wording; the
parent does not parse it. Instead the parent passes an inherited pipe's write end and names its
descriptor in `$DYNOMESH_READY_FD`; the child, once ready, writes one line to it,

    READY {"port": 8080, "admin_port": 8081}

and closes it. A child started any other way (by hand, by systemd) finds no variable and
announces nothing. The parent reads the line with `parse`; end of file without it means the
child exited (or gave up) before it was ready.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from typing import Any

READY_FD_ENV = "DYNOMESH_READY_FD"
PREFIX = b"READY "


class NotReady(Exception):
    """The child closed its ready pipe without a valid ready line (it exited, most likely)."""


class Readiness:
    """The child's side: `announce(**facts)` once, when ready; a no-op without a parent asking."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = fd

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Readiness:
        """Take `$DYNOMESH_READY_FD` out of the environment (the children of this process must
        not write to the parent's pipe); ValueError naming the problem for a bad value."""
        environ = os.environ if environ is None else environ
        value = environ.pop(READY_FD_ENV, None)
        if value is None:
            return cls(None)
        try:
            fd = int(value)
            os.set_inheritable(fd, False)  # raises for a descriptor that is not open
        except (ValueError, OSError):
            raise ValueError(f"${READY_FD_ENV}={value!r} is not an open file descriptor "
                             "(a supervisor sets it; unset it to run this by hand)") from None
        return cls(fd)

    @property
    def asked(self) -> bool:
        return self._fd is not None

    def announce(self, **facts: Any) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return  # nobody asked, or said already
        line = PREFIX + json.dumps(facts, separators=(",", ":")).encode() + b"\n"
        try:
            os.write(fd, line)  # one short write: a pipe takes it whole (below PIPE_BUF)
        except BrokenPipeError:
            pass  # the parent stopped waiting (it gave up on us); our stdout still says it
        finally:
            os.close(fd)


def parse(line: bytes) -> dict[str, Any]:
    """The facts of a ready line; NotReady for end of file or anything else."""
    if not line:
        raise NotReady("exited before it was ready")
    if not line.startswith(PREFIX):
        raise NotReady(f"wrote {line[:80]!r} instead of a ready line")
    try:
        facts = json.loads(line[len(PREFIX):])
    except ValueError as error:
        raise NotReady(f"a ready line that is not JSON: {error}") from None
    if not isinstance(facts, dict):
        raise NotReady("a ready line whose JSON is not an object")
    return facts
