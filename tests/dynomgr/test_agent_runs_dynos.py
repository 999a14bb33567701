"""Running dynos: environment, users, directories, boot detection, health checks, log lines."""

from __future__ import annotations

import os
import pwd
import re
import stat
from pathlib import Path

import pytest

from tests.dynomgr.conftest import http_json, marked_processes

AGENT_IS_ROOT = os.geteuid() == 0


def test_web_and_worker_dynos_start_and_report_herokus_lines(harness):
    slug = harness.slugs.make("web: python web.py\nworker: python worker.py\n")
    harness.write(
        harness.dyno("web.1", slug, env={"GREETING": "hi"}),
        harness.dyno("worker.1", slug),
    )
    agent = harness.start()
    address = agent.wait_up("web.1")
    agent.wait_for(r"hello heroku\[worker\.1\]: State changed from starting to up$")

    # Heroku's lines, in Heroku's order, with RFC 5424 microsecond timestamps.
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 "
    agent.wait_for(stamp + r"hello heroku\[web\.1\]: State changed from down to starting \(127\.0\.0\.1:\d+\)$")
    start = agent.wait_for(r"hello heroku\[web\.1\]: Starting process with command `\S+ web\.py`")
    assert start
    agent.wait_for(stamp + r"hello app\[web\.1\]: listening on \d+")
    agent.wait_for(r"hello app\[worker\.1\]: working pid=\d+")

    answer = http_json(address)
    assert answer["dyno"] == "web.1"
    assert answer["port"] == address.rsplit(":", 1)[1]
    assert 20000 <= int(answer["port"]) <= 29999
    assert answer["greeting"] == "hi"


def test_a_dyno_sees_its_config_vars_and_the_platforms_variables_and_nothing_else(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("web.1", slug, env={"GREETING": "hi", "DATABASE_URL": "postgres://db"}))
    agent = harness.start(env={"AGENT_SECRET": "must-not-leak", "LANG": "C.UTF-8"})
    answer = http_json(agent.wait_up("web.1"))
    expected = {"GREETING", "DATABASE_URL", "DYNOMGR_TEST_RUN", "PORT", "DYNO", "HOME", "PS", "PATH", "LANG"}
    # A marker variable appears only where cgroups are not available.
    extra = set(answer["env"]) - expected
    assert extra <= {"DYNOMESH_MARKER", "PWD", "SHLVL", "_"}, extra  # the last three come from /bin/sh
    assert expected <= set(answer["env"])
    assert answer["home"] == answer["cwd"]


@pytest.mark.skipif(not AGENT_IS_ROOT, reason="per-app users need a root agent")
def test_as_root_each_app_runs_as_its_own_user_in_a_private_directory(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("web.1", slug), harness.dyno("web.1", slug, app="other"))
    agent = harness.start()
    hello = http_json(agent.wait_up("web.1"))
    other = http_json(agent.wait_up("web.1", app="other"))
    assert pwd.getpwuid(hello["uid"]).pw_name == "dyno-hello"
    assert pwd.getpwuid(other["uid"]).pw_name == "dyno-other"
    assert hello["uid"] != 0 and other["uid"] != 0 and hello["uid"] != other["uid"]
    for answer in (hello, other):
        info = os.stat(answer["home"])
        assert info.st_uid == answer["uid"]
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert Path(answer["home"]).is_relative_to(harness.data_dir)
    assert hello["home"] != other["home"]


def test_a_worker_is_up_once_started_and_a_web_dyno_only_once_its_port_accepts(harness):
    slug = harness.slugs.make("web: python never_binds.py\nworker: python worker.py\n")
    harness.write(harness.dyno("web.1", slug), harness.dyno("worker.1", slug))
    agent = harness.start(flags={"--boot-timeout": "60"})
    agent.wait_for(r"hello heroku\[worker\.1\]: State changed from starting to up")
    agent.wait_for(r"hello app\[web\.1\]: not binding")
    assert agent.dynos()["hello web.1"]["state"] == "starting"
    assert agent.count(r"heroku\[web\.1\]: State changed from starting to up") == 0


def test_a_health_check_path_must_answer_2xx_before_the_dyno_is_up(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("web.1", slug, env={"HEALTHY_AFTER": "3"}, health_check="/health"))
    agent = harness.start()
    agent.wait_up("web.1")
    lines = agent.out
    up_at = next(i for i, line in enumerate(lines) if re.search(r"web\.1\]: State changed from starting to up", line))
    checks = [i for i, line in enumerate(lines) if "app[web.1]: health check" in line]
    # Three 503 answers, then the 200 that made it up.
    assert len([i for i in checks if i < up_at]) == 4


def test_output_lines_over_10000_bytes_are_split(harness):
    slug = harness.slugs.make("worker: python chatty.py\n")
    harness.write(harness.dyno("worker.1", slug, env={"LINES": "3"}))
    agent = harness.start()
    agent.wait_for(r"app\[worker\.1\]: done writing 3 lines")
    pieces = [line.split("]: ", 1)[1] for line in agent.out if "app[worker.1]: L" in line]
    assert [len(p) for p in pieces] == [10000, 10000, 5000]


def test_the_dynos_processes_are_the_ones_assigned(harness):
    slug = harness.slugs.make("web: python web.py\nworker: python worker.py\n")
    harness.write(harness.dyno("web.1", slug), harness.dyno("web.2", slug), harness.dyno("worker.1", slug))
    agent = harness.start()
    for name in ("web.1", "web.2"):
        agent.wait_up(name)
    agent.wait_for(r"worker\.1\]: State changed from starting to up")
    running = marked_processes(harness.run_id)
    assert set(running) == {"web.1", "web.2", "worker.1"}
    for dyno, procs in running.items():
        assert len({sid for _, sid in procs}) == 1, f"{dyno} runs in more than one session: {procs}"
