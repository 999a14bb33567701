"""A dyno's output FIFO: the pipe its stdout and stderr write to, which outlives the agent.

An anonymous pipe dies with its read end, so a dyno whose agent exits would get SIGPIPE on its
next line. Instead each life gets a named FIFO in the data dir's private `run/` directory:

* the agent opens the read end (non-blocking) and reads it as it read a pipe before;
* the dyno's stdout and stderr are one descriptor opened **read-write** on the same FIFO, so
  the dyno itself always holds a reader: when no agent reads, its writes fill the pipe buffer
  (64 KiB on Linux) and then block, and never fail with EPIPE;
* a new agent opens the FIFO by its path and gets the same pipe, with whatever the dyno wrote
  while nobody read still in the buffer, in order.

The pipe, and its buffer, exists as long as any process holds it, which the dyno does until its
last process exits; then the reading agent sees end-of-file as with a plain pipe.
"""

from __future__ import annotations

import os
from pathlib import Path


def create(path: Path) -> tuple[int, int]:
    """Make the FIFO; returns (read end for the agent, read-write end for the dyno)."""
    path.unlink(missing_ok=True)  # a stale FIFO of a life that never cleaned up
    os.mkfifo(path, 0o600)
    read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        # O_RDWR never blocks on a FIFO (Linux, fifo(7)) and makes the dyno a reader too.
        dyno_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        os.close(read_fd)
        raise
    return read_fd, dyno_fd


def reopen(path: Path) -> int:
    """A new read end on a FIFO some dyno still holds (raises FileNotFoundError if gone)."""
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)
