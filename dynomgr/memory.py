"""Memory: each dyno's resident memory from one pass over /proc, and what Heroku does about it.

R14 (Memory quota exceeded) is logged while a dyno uses more than its quota; R15 (Memory quota
vastly exceeded) kills it once it uses more than `kill_ratio` times the quota (2 by default,
Heroku's figure), after which it restarts like any crash.

A process belongs to a dyno when it is in the dyno's session, or descends (by parent pid) from a
process that does. Once seen, a process keeps its dyno (by pid and start time) even after it
leaves the session and its parent dies.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Hashable, Mapping

from dynomgr import procscan
from dynomgr.procscan import ProcStat

MB = 1024 * 1024


class MemoryVerdict(enum.Enum):
    OK = "ok"
    OVER_QUOTA = "R14"
    KILL = "R15"


def judge(rss_bytes: int, quota_mb: int, kill_ratio: float) -> MemoryVerdict:
    quota = quota_mb * MB
    if rss_bytes > quota * kill_ratio:
        return MemoryVerdict.KILL
    if rss_bytes > quota:
        return MemoryVerdict.OVER_QUOTA
    return MemoryVerdict.OK


def usage_text(rss_bytes: int, quota_mb: int) -> str:
    """Heroku's `mem=612M(119.5%)` wording, with MB spelled out."""
    return f"mem={rss_bytes / MB:.0f}MB({100.0 * rss_bytes / (quota_mb * MB):.1f}%)"


@dataclass(frozen=True, slots=True)
class _Seen:
    start_ticks: int
    sid: int
    dyno: Hashable | None


class MemorySampler:
    """Per-dyno resident memory from /proc, cheap enough for 500 dynos every few seconds.

    A process is classified once, from /proc/PID/stat (session, parent, start time): it belongs
    to the dyno whose session it is in, or to its parent's dyno. Later passes read only its
    /proc/PID/statm, which costs a third as much, and skip processes that belong to no dyno.
    Every `full_every` passes all processes are classified again, which catches a pid reused
    by another process; a process keeps its dyno across that (same pid and start time), so one
    that left the dyno's session and lost its parent is still counted. Blocking: run it in a
    worker thread.
    """

    def __init__(self, read=procscan, full_every: int = 6) -> None:
        self._proc = read
        self._full_every = full_every
        self._passes = 0
        self._seen: dict[int, _Seen] = {}

    def sample(self, sessions: Mapping[int, Hashable]) -> dict[Hashable, int]:
        """`sessions` maps each dyno's session id (its first process's pid) to the dyno."""
        full = self._passes % self._full_every == 0
        self._passes += 1
        totals: dict[Hashable, int] = {dyno: 0 for dyno in sessions.values()}
        seen: dict[int, _Seen] = {}
        fresh: dict[int, ProcStat] = {}
        for pid in self._proc.all_pids():
            known = None if full else self._seen.get(pid)
            if known is None:
                stat = self._proc.read_stat(pid)
                if stat is not None and not stat.zombie:
                    fresh[pid] = stat
                continue
            dyno = known.dyno if known.dyno is not None else sessions.get(known.sid)
            if dyno is None:
                seen[pid] = known  # belongs to no dyno: not read again until a full pass
            elif dyno in totals:
                rss = self._proc.read_rss(pid)
                if rss is not None:
                    totals[dyno] += rss
                    seen[pid] = _Seen(known.start_ticks, known.sid, dyno)
        for pid, stat in fresh.items():
            dyno = self._classify(pid, fresh, seen, sessions)
            seen[pid] = _Seen(stat.start_ticks, stat.sid, dyno)
            if dyno is not None and dyno in totals:
                totals[dyno] += stat.rss_bytes
        self._seen = seen
        return totals

    def _classify(self, pid, fresh, seen, sessions) -> Hashable | None:
        chain = []
        dyno = None
        while pid in fresh and len(chain) < 64:
            stat = fresh[pid]
            chain.append(pid)
            previous = self._seen.get(pid)
            dyno = sessions.get(stat.sid)
            if dyno is None and previous is not None and previous.start_ticks == stat.start_ticks:
                dyno = previous.dyno  # sticky: it was this dyno's before
            if dyno is not None or stat.ppid <= 1:
                break
            parent = seen.get(stat.ppid)
            if parent is not None:
                dyno = parent.dyno if parent.dyno is not None else sessions.get(parent.sid)
                break
            pid = stat.ppid
        for visited in chain:
            if visited in seen:
                continue
            stat = fresh[visited]
            seen[visited] = _Seen(stat.start_ticks, stat.sid, dyno)
        return dyno
