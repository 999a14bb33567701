"""Memory verdicts (R14/R15) and attributing processes to dynos."""

from __future__ import annotations

from dynomgr.memory import MB, MemorySampler, MemoryVerdict, judge, usage_text
from dynomgr.procscan import ProcStat, parse_stat
import pytest

pytestmark = pytest.mark.unit


def test_over_quota_is_r14_and_over_twice_is_r15():
    assert judge(512 * MB, 512, 2.0) is MemoryVerdict.OK
    assert judge(512 * MB + 1, 512, 2.0) is MemoryVerdict.OVER_QUOTA
    assert judge(1024 * MB, 512, 2.0) is MemoryVerdict.OVER_QUOTA
    assert judge(1024 * MB + 1, 512, 2.0) is MemoryVerdict.KILL
    assert judge(600 * MB, 512, 1.1) is MemoryVerdict.KILL


def test_usage_text_reads_like_herokus():
    assert usage_text(int(612 * MB), 512) == "mem=612MB(119.5%)"


def proc(pid, ppid, sid, rss_mb, start=1):
    return ProcStat(pid=pid, ppid=ppid, pgid=sid, sid=sid, start_ticks=start, rss_bytes=rss_mb * MB, zombie=False)


class FakeProc:
    """A /proc made of ProcStat rows; counts which files were read."""

    def __init__(self, *rows: ProcStat) -> None:
        self.table = {row.pid: row for row in rows}
        self.stat_reads: list[int] = []
        self.rss_reads: list[int] = []

    def all_pids(self):
        return sorted(self.table)

    def read_stat(self, pid):
        self.stat_reads.append(pid)
        return self.table.get(pid)

    def read_rss(self, pid):
        self.rss_reads.append(pid)
        row = self.table.get(pid)
        return row.rss_bytes if row else None


def vm() -> FakeProc:
    return FakeProc(
        proc(1, 0, 1, 5),  # init: nobody's
        proc(100, 1, 100, 10),  # web.1's first process
        proc(101, 100, 100, 20),  # its child in the same session
        proc(102, 101, 102, 30),  # a grandchild that called setsid()
        proc(200, 1, 200, 7),  # worker.1
        proc(300, 1, 300, 99),  # some other process on the VM
    )


def test_processes_count_for_the_dyno_whose_session_they_are_in_or_descend_from():
    totals = MemorySampler(vm()).sample({100: "web.1", 200: "worker.1"})
    assert totals == {"web.1": 60 * MB, "worker.1": 7 * MB}


def test_later_passes_read_only_the_resident_size_of_dyno_processes():
    fake = vm()
    sampler = MemorySampler(fake, full_every=3)
    sessions = {100: "web.1", 200: "worker.1"}
    sampler.sample(sessions)
    fake.stat_reads.clear()
    fake.table[101] = proc(101, 100, 100, 50)  # web.1's child grew
    assert sampler.sample(sessions) == {"web.1": 90 * MB, "worker.1": 7 * MB}
    assert fake.stat_reads == []  # nothing new: no stat read at all
    assert sorted(fake.rss_reads) == [100, 101, 102, 200]  # init and pid 300 are skipped
    fake.table[103] = proc(103, 101, 100, 1)  # a new child appears: classified once
    assert sampler.sample(sessions)["web.1"] == 91 * MB
    assert fake.stat_reads == [103]


def test_a_dyno_started_after_its_processes_were_first_seen_is_counted_at_once():
    fake = vm()
    sampler = MemorySampler(fake, full_every=100)
    assert sampler.sample({100: "web.1"}) == {"web.1": 60 * MB}
    # worker.1's process was seen as nobody's; now the dyno is known.
    assert sampler.sample({100: "web.1", 200: "worker.1"}) == {"web.1": 60 * MB, "worker.1": 7 * MB}


def test_an_escaped_process_keeps_its_dyno_after_its_parent_dies_but_not_its_pid():
    fake = FakeProc(proc(100, 1, 100, 10), proc(101, 100, 100, 1), proc(102, 101, 102, 30))
    sampler = MemorySampler(fake, full_every=1)  # every pass classifies from scratch
    sampler.sample({100: "web.1"})
    # 101 exited; 102 was re-parented to init but is still web.1's.
    del fake.table[101]
    fake.table[102] = proc(102, 1, 102, 30)
    assert sampler.sample({100: "web.1"}) == {"web.1": 40 * MB}
    # A new process that reuses pid 102 (different start time) is not.
    fake.table[102] = proc(102, 1, 102, 30, start=999)
    assert sampler.sample({100: "web.1"}) == {"web.1": 10 * MB}


def test_stat_lines_with_odd_command_names_parse():
    raw = b"4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 1000 25 18446744073709551615"
    stat = parse_stat(4242, raw)
    assert (stat.ppid, stat.pgid, stat.sid, stat.start_ticks) == (1, 4242, 4242, 777)
    assert stat.rss_bytes == 25 * __import__("os").sysconf("SC_PAGE_SIZE")
    assert not stat.zombie
