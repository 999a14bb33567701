"""Bytes as they come off a socket or a pipe -> complete lines, the one splitter everything uses.

A control-plane feed (one JSON object per line), a dyno's output, a child's output under a
supervisor: the bytes arrive in chunks that cut lines anywhere. `LineSplitter.feed(chunk)`
returns the lines the chunk completed, without their newline (nor a `\\r` before it), and holds
the unfinished rest. Memory stays bounded by `max_bytes`; what a line longer than that means
depends on the reader:

* ``"split"`` (output lines): it comes out in pieces of `max_bytes`, as Heroku's log router
  splits lines longer than 10000 bytes;
* ``"refuse"`` (a feed): it is a broken peer, and `LineTooLong` is raised.

Only the new bytes are searched for a newline, so a long line arriving in many chunks costs
linear time.
"""

from __future__ import annotations

from typing import Literal


class LineTooLong(ValueError):
    """A line passed the splitter's bound (in "refuse" mode)."""


class LineSplitter:
    __slots__ = ("_held", "_max", "_refuse")

    def __init__(self, max_bytes: int, *, overlong: Literal["split", "refuse"] = "split") -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if overlong not in ("split", "refuse"):
            raise ValueError(f"overlong must be 'split' or 'refuse', not {overlong!r}")
        self._max = max_bytes
        self._refuse = overlong == "refuse"
        self._held = bytearray()  # the start of a line whose newline has not come yet

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._held:
                self._held += data[start:end]
                line = bytes(self._held)
                self._held.clear()
            else:
                line = data[start:end]
            if line.endswith(b"\r"):
                line = line[:-1]
            self._emit(line, lines)
            start = end + 1
        if start < len(data):
            self._held += data[start:]
            if len(self._held) > self._max:
                if self._refuse:
                    raise LineTooLong(f"a line passed {self._max} bytes without ending")
                # Hold at most one piece's worth: a line that never ends must not grow memory.
                keep = len(self._held) - (len(self._held) - 1) // self._max * self._max
                self._emit(bytes(self._held[:-keep]), lines)
                del self._held[:-keep]
        return lines

    def _emit(self, line: bytes, lines: list[bytes]) -> None:
        limit = self._max
        if len(line) <= limit:
            lines.append(line)
        elif self._refuse:
            raise LineTooLong(f"a line of {len(line)} bytes passed the bound of {limit}")
        else:
            lines.extend(line[i:i + limit] for i in range(0, len(line), limit))

    def held(self) -> bytes:
        """The start of a line still waiting for its newline (handed to a successor reader)."""
        return bytes(self._held)

    def flush(self) -> list[bytes]:
        """What is left when the stream ends: a last line without its newline."""
        if not self._held:
            return []
        rest = bytes(self._held)
        self._held.clear()
        return [rest]


def decode_line(raw: bytes) -> str:
    # Programs write what they like; a bad byte becomes U+FFFD rather than losing the line.
    return raw.decode("utf-8", "replace")
