"""Reading /proc: one pass over every process, cheap enough to do every few seconds for 500 dynos.

Everything here is blocking file I/O on procfs (memory-backed, microseconds a file); the agent
calls the whole-table scans from a worker thread so its event loop keeps answering.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    ppid: int
    pgid: int
    sid: int
    start_ticks: int  # since boot; with the pid, identifies a process across pid reuse
    rss_bytes: int
    zombie: bool


def read_stat(pid: int) -> ProcStat | None:
    """The process's /proc/PID/stat, or None when it is gone."""
    # os.open/os.read: a third of the cost of open() with its buffered file object, which
    # matters when a memory pass reads a thousand of these.
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        raw = os.read(fd, 1024)
    except ProcessLookupError:  # exited between open and read
        return None
    finally:
        os.close(fd)
    return parse_stat(pid, raw)


def parse_stat(pid: int, raw: bytes) -> ProcStat | None:
    # `comm` (field 2) may hold spaces and parentheses: the fields we want follow the last ')'.
    _, paren, rest = raw.rpartition(b")")
    if not paren:
        return None
    fields = rest.split()
    if len(fields) < 22:
        return None
    state = fields[0]
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        sid=int(fields[3]),
        start_ticks=int(fields[19]),
        rss_bytes=int(fields[21]) * PAGE_SIZE,
        zombie=state in (b"Z", b"X"),
    )


def read_rss(pid: int) -> int | None:
    """Resident bytes from /proc/PID/statm: cheaper than stat when that is all we need."""
    try:
        fd = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        raw = os.read(fd, 256)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    fields = raw.split()
    return int(fields[1]) * PAGE_SIZE if len(fields) > 1 else None


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def scan() -> dict[int, ProcStat]:
    """Every live (non-zombie) process on this machine, by pid."""
    table: dict[int, ProcStat] = {}
    for pid in all_pids():
        stat = read_stat(pid)
        if stat is not None and not stat.zombie:
            table[pid] = stat
    return table


def is_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether `pid` runs (not a zombie) and, if given, is still the process started then."""
    stat = read_stat(pid)
    if stat is None or stat.zombie:
        return False
    return start_ticks is None or stat.start_ticks == start_ticks


def environ_value(pid: int, key: bytes) -> bytes | None:
    """The value of `key` in the process's initial environment, or None (gone, no access)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    needle = key + b"="
    for entry in data.split(b"\0"):
        if entry.startswith(needle):
            return entry[len(needle) :]
    return None
