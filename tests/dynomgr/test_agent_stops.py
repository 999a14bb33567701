"""Stopping dynos: SIGTERM then SIGKILL (R12), escaped processes, draining, agent crashes."""

from __future__ import annotations

import os
import signal

import pytest

from tests.dynomgr.conftest import marked_processes, pid_alive


def cgroups_writable() -> bool:
    return os.geteuid() == 0 and any(
        line.split(" - ")[1].startswith("cgroup2 ") for line in open("/proc/self/mountinfo") if " - " in line
    )


MARKERS = [
    pytest.param("cgroup", marks=pytest.mark.skipif(not cgroups_writable(), reason="no writable cgroup v2")),
    "environ",
]


def test_a_dyno_that_ignores_sigterm_gets_r12_then_sigkill(harness):
    slug = harness.slugs.make("worker: python stubborn.py\nclock: python worker.py\n")
    harness.write(harness.dyno("worker.1", slug), harness.dyno("clock.1", slug))
    agent = harness.start(flags={"--stop-timeout": "1"})
    pid = int(agent.wait_for(r"app\[worker\.1\]: stubborn pid=(\d+)").group(1))
    agent.wait_for(r"heroku\[clock\.1\]: State changed from starting to up")
    mark = agent.mark()
    harness.write(harness.dyno("clock.1", slug))
    agent.signal(signal.SIGHUP)
    expected = [
        r"hello heroku\[worker\.1\]: Stopping: no longer assigned to this VM$",
        r"hello heroku\[worker\.1\]: State changed from up to stopping$",
        r"hello heroku\[worker\.1\]: Stopping all processes with SIGTERM$",
        r"hello app\[worker\.1\]: ignoring SIGTERM$",
        # /bin/sh (the dyno's first process) exits on SIGTERM; its child ignores it.
        r"hello heroku\[worker\.1\]: Process exited with status 143$",
        r"hello heroku\[worker\.1\]: Error R12 \(Exit timeout\) -> At least one process failed to exit within 1 seconds of SIGTERM$",
        r"hello heroku\[worker\.1\]: Stopping remaining processes with SIGKILL$",
        r"hello heroku\[worker\.1\]: State changed from stopping to down$",
    ]
    for pattern in expected:
        _, mark = agent.wait_line(pattern, after=mark)
    assert not pid_alive(pid)
    assert agent.count(r"app\[worker\.1\]: ignoring SIGTERM") == 1  # signalled once, not per route
    agent.wait_until(lambda: set(agent.dynos()) == {"hello clock.1"}, what="worker.1 gone from /dynos")
    assert agent.metric("dynomgr_dyno_errors_total", code="R12") == 1


@pytest.mark.parametrize("marker", MARKERS)
def test_no_process_of_a_stopped_dyno_survives_even_one_that_left_its_session(harness, marker):
    slug = harness.slugs.make("worker: python escape.py\n")
    harness.write(harness.dyno("worker.1", slug))
    agent = harness.start(flags={"--marker": marker, "--stop-timeout": "1"})
    grandchild = int(agent.wait_for(r"app\[worker\.1\]: grandchild pid=(\d+)").group(1))
    leader = int(agent.wait_for(r"app\[worker\.1\]: leader pid=(\d+)").group(1))
    assert os.getsid(grandchild) != os.getsid(leader)  # it did escape the dyno's session
    harness.write()
    agent.signal(signal.SIGHUP)
    agent.wait_for(r"heroku\[worker\.1\]: State changed from stopping to down")
    # The grandchild ignored SIGTERM: R12 and SIGKILL found it by its marker.
    agent.wait_for(r"heroku\[worker\.1\]: Error R12 \(Exit timeout\)")
    assert not pid_alive(grandchild) and not pid_alive(leader)
    assert marked_processes(harness.run_id) == {}


@pytest.mark.parametrize("marker", MARKERS)
def test_a_crashed_dyno_takes_its_escaped_processes_with_it(harness, marker):
    slug = harness.slugs.make("worker: python escape.py & sleep 0.5; exit 3\n")
    harness.write(harness.dyno("worker.1", slug))
    agent = harness.start(flags={"--marker": marker, "--restart-base": "30", "--restart-cap": "30"})
    grandchild = int(agent.wait_for(r"app\[worker\.1\]: grandchild pid=(\d+)").group(1))
    _, mark = agent.wait_line(r"heroku\[worker\.1\]: Process exited with status 3")
    _, mark = agent.wait_line(r"heroku\[worker\.1\]: State changed from up to crashed", after=mark)
    # The first life is torn down before the immediate restart begins.
    _, mark = agent.wait_line(r"heroku\[worker\.1\]: State changed from crashed to starting", after=mark)
    assert not pid_alive(grandchild)
    second = int(agent.wait_for(r"app\[worker\.1\]: grandchild pid=(\d+)", after=mark).group(1))
    assert second != grandchild and pid_alive(second)


def test_sigterm_drains_every_dyno_and_exits_0(harness):
    slug = harness.slugs.make("web: python web.py\nworker: python worker.py\nslow: python stubborn.py\n")
    harness.write(harness.dyno("web.1", slug), harness.dyno("worker.1", slug), harness.dyno("slow.1", slug))
    agent = harness.start(flags={"--stop-timeout": "1"})
    agent.wait_up("web.1")
    agent.wait_for(r"worker\.1\]: State changed from starting to up")
    agent.wait_for(r"app\[slow\.1\]: stubborn pid=")
    assert set(marked_processes(harness.run_id)) == {"web.1", "worker.1", "slow.1"}
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit() == 0
    for dyno in ("web.1", "worker.1", "slow.1"):
        assert agent.count(rf"heroku\[{dyno}\]: Stopping: the dyno manager is shutting down") == 1
        assert agent.count(rf"heroku\[{dyno}\]: State changed from stopping to down") == 1
    assert agent.count(r"heroku\[web\.1\]: Process exited with status 143") == 1
    assert agent.count(r"heroku\[slow\.1\]: Error R12") == 1
    assert marked_processes(harness.run_id) == {}
    assert any("all dynos stopped; exiting" in line for line in agent.err)


def test_after_the_agent_is_killed_its_successor_stops_the_leftovers_and_runs_each_dyno_once(harness):
    slug = harness.slugs.make("web: python web.py\nworker: python escape.py\n")
    harness.write(harness.dyno("web.1", slug), harness.dyno("web.2", slug), harness.dyno("worker.1", slug))
    first = harness.start()
    first.wait_up("web.1")
    first.wait_up("web.2")
    grandchild = int(first.wait_for(r"app\[worker\.1\]: grandchild pid=(\d+)").group(1))
    before = marked_processes(harness.run_id)
    assert set(before) == {"web.1", "web.2", "worker.1"}

    first.proc.kill()  # SIGKILL: no chance to stop anything
    first.wait_exit()
    assert pid_alive(grandchild)  # the dynos outlived their agent

    second = harness.start()
    second.wait_for(r"dynomgr: stopping hello (web\.1|web\.2|worker\.1) left running by a previous dyno manager", stream="err")
    second.wait_up("web.1")
    second.wait_up("web.2")
    second.wait_for(r"app\[worker\.1\]: grandchild pid=")
    after = marked_processes(harness.run_id)
    assert set(after) == {"web.1", "web.2", "worker.1"}
    old_pids = {pid for procs in before.values() for pid, _ in procs}
    new_pids = {pid for procs in after.values() for pid, _ in procs}
    assert not old_pids & new_pids, "a process of the killed agent's dynos still runs"
    assert not pid_alive(grandchild)
    # Exactly one instance of each dyno: its processes share one session, except the one
    # escaped grandchild of worker.1.
    for dyno in ("web.1", "web.2"):
        assert len({sid for _, sid in after[dyno]}) == 1
    assert len({sid for _, sid in after["worker.1"]}) == 2
