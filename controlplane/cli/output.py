"""Text output: aligned tables, JSON for scripts, and upload progress on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def emit_json(data: Any, stream: TextIO | None = None) -> None:
    print(json.dumps(data, indent=2, sort_keys=True), file=stream or sys.stdout)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
          stream: TextIO | None = None) -> None:
    """Columns padded to their widest cell, a dashed rule under the header (like `heroku ps`)."""
    stream = stream or sys.stdout
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()

    print(line(cells[0]), file=stream)
    print(line(["-" * w for w in widths]), file=stream)
    for row in cells[1:]:
        print(line(row), file=stream)


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Upload progress: a redrawn bar on a terminal, a line per quarter otherwise (for logs)."""

    WIDTH = 30

    def __init__(self, label: str, total: int, stream: TextIO | None = None,
                 tty: bool | None = None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._next_quarter = 25

    def advance(self, amount: int) -> None:
        self.done = min(self.total, self.done + amount)
        percent = self.done * 100 // self.total
        if self.tty:
            filled = self.WIDTH * self.done // self.total
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {percent:3d}% "
                              f"{human_size(self.done)}/{human_size(self.total)}")
            self.stream.flush()
            return
        if percent >= self._next_quarter:
            print(f"{self.label}: {percent}% ({human_size(self.done)} of "
                  f"{human_size(self.total)})", file=self.stream, flush=True)
            self._next_quarter = percent // 25 * 25 + 25

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
