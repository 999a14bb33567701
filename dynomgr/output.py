"""A dyno's stdout and stderr as log lines.

The dyno writes into pipes that the agent's event loop drains as soon as bytes arrive, so a dyno
never waits on its own logging; what happens to a line after that (printing it, shipping it,
dropping it when the consumer is slow) is the reporter's business.
"""

from __future__ import annotations

# Heroku's log router (logplex) splits lines longer than 10000 bytes.
MAX_LINE_BYTES = 10_000


class LineSplitter:
    """Bytes in, complete lines out (without their newline), none longer than `max_bytes`."""

    __slots__ = ("_buffer", "_max")

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self._buffer = bytearray()
        self._max = max_bytes

    def feed(self, data: bytes) -> list[bytes]:
        buffer, limit = self._buffer, self._max
        buffer += data
        lines: list[bytes] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end == -1:
                # No newline yet: hold at most one line's worth, emit the rest in pieces.
                while len(buffer) - start > limit:
                    lines.append(bytes(buffer[start : start + limit]))
                    start += limit
                break
            while end - start > limit:
                lines.append(bytes(buffer[start : start + limit]))
                start += limit
            line = bytes(buffer[start:end])
            lines.append(line[:-1] if line.endswith(b"\r") else line)
            start = end + 1
        del buffer[:start]
        return lines

    def flush(self) -> list[bytes]:
        """What is left when the pipe closes: a last line without its newline."""
        if not self._buffer:
            return []
        rest = bytes(self._buffer)
        self._buffer.clear()
        return [rest]


def decode_line(raw: bytes) -> str:
    # Apps write what they like; a bad byte becomes U+FFFD rather than losing the line.
    return raw.decode("utf-8", "replace")
