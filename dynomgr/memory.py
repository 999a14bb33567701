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
from typing import Hashable, Iterable, Mapping

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


class MemoryAttribution:
    """Sums RSS per dyno over a /proc table. Keeps the sticky pid -> dyno map between passes."""

    def __init__(self) -> None:
        self._sticky: dict[tuple[int, int], Hashable] = {}

    def sum_by_dyno(
        self, table: Mapping[int, ProcStat], sessions: Mapping[int, Hashable]
    ) -> dict[Hashable, int]:
        """`sessions` maps each dyno's session id (its first process's pid) to the dyno."""
        owner: dict[int, Hashable | None] = {}

        def owner_of(pid: int) -> Hashable | None:
            chain: list[int] = []
            found: Hashable | None = None
            while pid in table and pid not in owner:
                stat = table[pid]
                chain.append(pid)
                found = sessions.get(stat.sid) or self._sticky.get((pid, stat.start_ticks))
                if found is not None or stat.ppid <= 1:
                    break
                pid = stat.ppid
            else:
                found = owner.get(pid)
            for visited in chain:
                owner[visited] = found
            return found

        totals: dict[Hashable, int] = {dyno: 0 for dyno in sessions.values()}
        sticky: dict[tuple[int, int], Hashable] = {}
        for pid, stat in table.items():
            dyno = owner_of(pid)
            if dyno is not None and dyno in totals:
                totals[dyno] += stat.rss_bytes
                sticky[(pid, stat.start_ticks)] = dyno
        self._sticky = sticky  # forget processes that are gone
        return totals

    def forget(self, dynos: Iterable[Hashable]) -> None:
        gone = set(dynos)
        self._sticky = {k: v for k, v in self._sticky.items() if v not in gone}
