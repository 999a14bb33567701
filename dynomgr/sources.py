"""Where assignments come from. The agent asks a source for full desired sets; it never cares how.

A JSON file, read at start and again on every SIGHUP (`FileAssignmentSource`, here), or the
control plane's assignment feed (a snapshot, then deltas of the same entry shape), which keeps a
full set and hands it over after every change (`FeedAssignmentSource`, feed.py). Both satisfy
`AssignmentSource`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from dynomgr.assignments import AssignmentSet, AssignmentsError, parse_assignments


class AssignmentSource(Protocol):
    def describe(self) -> str:
        """Names the source in messages: `assignments file ./a.json`."""
        ...

    async def first(self) -> AssignmentSet:
        """The initial desired set. Raises `AssignmentsError` when there is none to be had."""
        ...

    async def next(self) -> AssignmentSet:
        """Wait for the next full desired set. Raises `AssignmentsError` for a bad update, after
        which the caller keeps what it has and calls `next()` again."""
        ...

    def reload(self) -> None:
        """An operator asked for a fresh read (SIGHUP). Feed followers may ignore it."""
        ...

    def status(self) -> dict | None:
        """How the source is doing, for /healthz (None: nothing to say)."""
        ...

    async def aclose(self) -> None:
        """Stop following; no more sets will come."""
        ...


class FileAssignmentSource:
    def __init__(self, path: Path, supported_schemes: frozenset[str]) -> None:
        self.path = path
        self._schemes = supported_schemes
        self._reload = asyncio.Event()

    def describe(self) -> str:
        return f"assignments file {self.path}"

    def reload(self) -> None:
        self._reload.set()

    async def first(self) -> AssignmentSet:
        return self._read()

    async def next(self) -> AssignmentSet:
        await self._reload.wait()
        self._reload.clear()
        return self._read()

    def status(self) -> dict | None:
        return None

    async def aclose(self) -> None:
        return None

    def _read(self) -> AssignmentSet:
        # A small local file: reading it inline is quicker than a thread hop.
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise AssignmentsError("no such file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise AssignmentsError(f"cannot read it: {exc}") from exc
        return parse_assignments(text, self._schemes)
