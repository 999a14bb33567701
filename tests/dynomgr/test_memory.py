"""Memory verdicts (R14/R15) and attributing processes to dynos."""

from __future__ import annotations

from dynomgr.memory import MB, MemoryAttribution, MemoryVerdict, judge, usage_text
from dynomgr.procscan import ProcStat, parse_stat


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


def test_processes_count_for_the_dyno_whose_session_they_are_in_or_descend_from():
    table = {
        p.pid: p
        for p in [
            proc(1, 0, 1, 5),  # init: nobody's
            proc(100, 1, 100, 10),  # web.1's first process
            proc(101, 100, 100, 20),  # its child in the same session
            proc(102, 101, 102, 30),  # a grandchild that called setsid()
            proc(200, 1, 200, 7),  # worker.1
            proc(300, 1, 300, 99),  # some other process on the VM
        ]
    }
    totals = MemoryAttribution().sum_by_dyno(table, {100: "web.1", 200: "worker.1"})
    assert totals == {"web.1": 60 * MB, "worker.1": 7 * MB}


def test_an_escaped_process_keeps_its_dyno_after_its_parent_dies():
    attribution = MemoryAttribution()
    first = {p.pid: p for p in [proc(100, 1, 100, 10), proc(101, 100, 100, 1), proc(102, 101, 102, 30)]}
    attribution.sum_by_dyno(first, {100: "web.1"})
    # 101 exited; 102 was re-parented to init but is still web.1's.
    later = {p.pid: p for p in [proc(100, 1, 100, 10), proc(102, 1, 102, 30)]}
    assert attribution.sum_by_dyno(later, {100: "web.1"}) == {"web.1": 40 * MB}
    # A new process that reuses pid 102 (different start time) is not.
    reused = {p.pid: p for p in [proc(100, 1, 100, 10), proc(102, 1, 102, 30, start=999)]}
    assert attribution.sum_by_dyno(reused, {100: "web.1"}) == {"web.1": 10 * MB}


def test_stat_lines_with_odd_command_names_parse():
    raw = b"4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 1000 25 18446744073709551615"
    stat = parse_stat(4242, raw)
    assert (stat.ppid, stat.pgid, stat.sid, stat.start_ticks) == (1, 4242, 4242, 777)
    assert stat.rss_bytes == 25 * __import__("os").sysconf("SC_PAGE_SIZE")
    assert not stat.zombie
