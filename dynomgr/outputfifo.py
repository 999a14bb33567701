"""A dyno's output FIFOs: the pipes its stdout and stderr write to, which outlive the agent.

An anonymous pipe dies with its read end, so a dyno whose agent exits would get SIGPIPE on its
next line. Instead each life gets two named FIFOs in the data dir's private `run/` directory,
`<life>.out` for stdout and `<life>.err` for stderr (two, as there were two pipes: each stream is
split into lines on its own, so half a stdout line and a stderr line never merge):

* the agent opens the read end (non-blocking) and reads it as it read a pipe before;
* the dyno's end is opened **read-write** on the FIFO, so the dyno itself always holds a reader:
  when no agent reads, its writes fill the pipe buffer and then block, and never fail with EPIPE;
* the buffer is raised from Linux's 64 KiB to what an unprivileged process may ask
  (/proc/sys/fs/pipe-max-size, 1 MiB by default; fcntl(2) F_SETPIPE_SZ), so a chatty dyno
  writes on through a longer gap between two agents;
* a new agent opens the FIFO by its path and gets the same pipe, with whatever the dyno wrote
  while nobody read still in the buffer, in order.

The pipe, and its buffer, exists as long as any process holds it, which the dyno does until its
last process exits; then the reading agent sees end-of-file as with a plain pipe.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

# The largest pipe buffer we ask for; the kernel caps it at pipe-max-size for unprivileged users.
PIPE_BUFFER = 1 << 20


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
    _enlarge(read_fd)
    return read_fd, dyno_fd


def _enlarge(fd: int) -> None:
    """Raise the pipe's buffer as far as allowed; the default 64 KiB still works."""
    size = PIPE_BUFFER
    while size > 65536:
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
            return
        except PermissionError:  # above pipe-max-size, or the user's pipe-user-pages-soft
            size //= 2
        except OSError:
            return


def reopen(path: Path) -> int:
    """A new read end on a FIFO some dyno still holds; raises OSError when it cannot be read
    (FileNotFoundError when removed, EINVAL when something else took its place)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a FIFO", str(path))
    return fd
