"""Memory quotas (R14, R15) and daily cycling."""

from __future__ import annotations

import re

from tests.dynomgr.conftest import pid_alive


def test_a_dyno_over_its_quota_gets_r14_and_over_twice_its_quota_r15_and_a_restart(harness):
    slug = harness.slugs.make("worker: python hog.py\n")
    harness.write(harness.dyno("worker.1", slug, memory_mb=32, env={"STEP_MB": "4", "STEP_SECONDS": "0.25", "MAX_MB": "200"}))
    agent = harness.start(flags={"--memory-interval": "0.2", "--restart-base": "30", "--restart-cap": "30"})
    usage, mark = agent.wait_line(r"hello heroku\[worker\.1\]: Process running mem=(\d+)MB\((\d+\.\d)%\)$")
    assert 100 < float(usage.group(2)) and int(usage.group(1)) >= 32
    # Heroku's pair of lines: the usage, then the error.
    _, after_r14 = agent.wait_line(r"hello heroku\[worker\.1\]: Error R14 \(Memory quota exceeded\)$", after=mark)
    assert after_r14 == mark + 1
    _, mark = agent.wait_line(r"hello heroku\[worker\.1\]: Error R15 \(Memory quota vastly exceeded\)$", after=mark)
    for pattern in (
        r"heroku\[worker\.1\]: Stopping process with SIGKILL$",
        r"heroku\[worker\.1\]: Process exited with status 137$",
        r"heroku\[worker\.1\]: State changed from up to crashed$",
        r"heroku\[worker\.1\]: State changed from crashed to starting$",
    ):
        _, mark = agent.wait_line(pattern, after=mark)
    # What it held when killed was over 2x the quota.
    lines = [l for l in agent.out if "Process running mem=" in l]
    held = [int(re.search(r"mem=(\d+)MB", l).group(1)) for l in lines]
    assert max(held) > 64
    assert agent.metric("dynomgr_dyno_errors_total", code="R15") >= 1
    assert agent.metric("dynomgr_dyno_errors_total", code="R14") >= 1


def test_memory_of_every_dyno_is_exported(harness):
    slug = harness.slugs.make("worker: python worker.py\n")
    harness.write(harness.dyno("worker.1", slug, memory_mb=256))
    agent = harness.start(flags={"--memory-interval": "0.2"})
    agent.wait_for(r"app\[worker\.1\]: working")
    memory = agent.wait_until(lambda: agent.metric("dynomgr_dyno_memory_bytes", app="hello", dyno="worker.1"),
                              what="a memory sample")
    assert 1_000_000 < memory < 256 * 1024 * 1024  # a sleeping Python and its shell
    assert agent.metric("dynomgr_dyno_memory_quota_bytes", app="hello", dyno="worker.1") == 256 * 1024 * 1024
    assert agent.dynos()["hello worker.1"]["memory_bytes"] > 0


def test_daily_cycling_restarts_a_dyno_with_a_cycling_line(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("web.1", slug))
    agent = harness.start(cycling=True, flags={"--cycle-after": "1", "--cycle-jitter": "0"})
    _, mark = agent.wait_line(r"hello heroku\[web\.1\]: State changed from starting to up")
    pid = int(agent.wait_for(r"app\[web\.1\]: listening on \d+ pid=(\d+)").group(1))
    for pattern in (
        r"hello heroku\[web\.1\]: Cycling$",
        r"hello heroku\[web\.1\]: State changed from up to stopping$",
        r"hello heroku\[web\.1\]: Stopping all processes with SIGTERM$",
        r"hello heroku\[web\.1\]: Process exited with status 143$",
        r"hello heroku\[web\.1\]: State changed from stopping to down$",
        r"hello heroku\[web\.1\]: State changed from down to starting",
        r"hello heroku\[web\.1\]: State changed from starting to up",
    ):
        _, mark = agent.wait_line(pattern, after=mark)
    assert not pid_alive(pid)
    assert agent.metric("dynomgr_dyno_restarts_total", app="hello", type="web") == 0  # not a crash
