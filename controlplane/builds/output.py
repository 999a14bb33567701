"""A build's output: lines held while it runs (followers read them live), then kept.

Followers (`builds:output`, a deploy's CLI) each read from a line index and wait for more, so
a slow follower holds up neither the build nor the others. What is kept is bounded: at most
`KEPT_BYTES` of the newest lines (a pip that prints a megabyte of warnings keeps its end, where
the reason is), with a line saying how much was cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

KEPT_BYTES = 1024 * 1024
MAX_LINE = 4096  # a longer line is cut: pip's progress bars are off, so only junk is that long


class BuildOutput:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.done = False
        self._bytes = 0
        self._cut = 0  # lines dropped from the front
        self._changed = asyncio.Event()

    def say(self, line: str) -> None:
        line = line.rstrip("\r\n")[:MAX_LINE]
        self.lines.append(line)
        self._bytes += len(line) + 1
        while self._bytes > KEPT_BYTES and len(self.lines) > 1:
            self._bytes -= len(self.lines.pop(0)) + 1
            self._cut += 1
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def text(self) -> str:
        head = [f"(the first {self._cut} lines were cut)"] if self._cut else []
        return "\n".join(head + self.lines) + "\n"

    async def follow(self) -> AsyncIterator[str]:
        """Every line from the first still held to the end of the build."""
        sent = self._cut
        while True:
            changed = self._changed  # taken first: a line said while we yield sets it
            start = max(sent - self._cut, 0)
            fresh = self.lines[start:]
            sent = self._cut + len(self.lines)
            for line in fresh:
                yield line
            if self.done:
                return
            await changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
