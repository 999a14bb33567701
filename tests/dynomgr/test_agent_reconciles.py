"""SIGHUP: re-read the assignments and change only what changed."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.dynomgr.conftest import http_json, marked_processes


def test_sighup_starts_stops_and_restarts_only_what_changed(harness):
    slug = harness.slugs.make("web: python web.py\nworker: python worker.py\nclock: python worker.py\n")
    harness.write(
        harness.dyno("web.1", slug, env={"GREETING": "hi"}),
        harness.dyno("worker.1", slug),
        harness.dyno("clock.1", slug),
    )
    agent = harness.start()
    web_address = agent.wait_up("web.1")
    agent.wait_for(r"worker\.1\]: State changed from starting to up")
    clock_pid = int(agent.wait_for(r"app\[clock\.1\]: working pid=(\d+)").group(1))
    old_web_pid = http_json(web_address)["pid"]

    mark = agent.mark()
    harness.write(
        harness.dyno("web.1", slug, env={"GREETING": "hello"}),  # config change: restart
        harness.dyno("web.2", slug),  # new: start
        harness.dyno("clock.1", slug),  # unchanged: untouched
    )  # worker.1 removed: stop
    agent.signal(signal.SIGHUP)

    agent.wait_for(r"hello heroku\[worker\.1\]: Stopping: no longer assigned to this VM", after=mark)
    agent.wait_for(r"hello heroku\[worker\.1\]: State changed from stopping to down", after=mark)
    agent.wait_for(r"hello heroku\[web\.1\]: Restarting: config vars changed", after=mark)
    agent.wait_for(r"hello heroku\[web\.1\]: State changed from stopping to down", after=mark)
    new_web = agent.wait_up("web.1", after=mark)
    agent.wait_up("web.2", after=mark)

    answer = http_json(new_web)
    assert answer["greeting"] == "hello" and answer["pid"] != old_web_pid
    assert agent.count(r"heroku\[clock\.1\]", after=mark) == 0
    running = marked_processes(harness.run_id)
    assert set(running) == {"web.1", "web.2", "clock.1"}
    assert clock_pid in {pid for pid, _ in running["clock.1"]}


def test_a_new_release_restarts_the_dyno_on_the_new_slug(harness):
    v1 = harness.slugs.make("web: python web.py\n")
    v2 = harness.slugs.make("web: python web.py\n", extra={"VERSION": b"2"})
    harness.write(harness.dyno("web.1", v1, release=1))
    agent = harness.start()
    old_home = http_json(agent.wait_up("web.1"))["home"]
    mark = agent.mark()
    harness.write(harness.dyno("web.1", v2, release=2))
    agent.signal(signal.SIGHUP)
    agent.wait_for(r"hello heroku\[web\.1\]: Restarting for release v2", after=mark)
    address = agent.wait_up("web.1", after=mark)
    home = http_json(address)["home"]
    assert home != old_home and not Path(old_home).exists()  # a fresh directory per start
    assert Path(home, "VERSION").read_text() == "2"  # unpacked from the v2 slug
    assert agent.dynos()["hello web.1"]["release"] == 2


def test_a_broken_file_on_sighup_keeps_every_dyno_running(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("web.1", slug))
    agent = harness.start()
    address = agent.wait_up("web.1")
    pid = http_json(address)["pid"]
    harness.assignments.write_text('{"dynos": [ {"name": ')
    agent.signal(signal.SIGHUP)
    agent.wait_for(r"dynomgr: error: assignments file \S+: not valid JSON: .* at line 1 column \d+; keeping the 1 dynos already assigned", stream="err")
    assert http_json(address)["pid"] == pid
    assert agent.metric("dynomgr_assignment_updates_total", outcome="rejected") == 1


def test_a_bad_entry_for_a_running_dyno_keeps_that_dyno_as_it_is(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("web.1", slug), harness.dyno("web.2", slug))
    agent = harness.start()
    address = agent.wait_up("web.1")
    agent.wait_up("web.2")
    pid = http_json(address)["pid"]
    mark = agent.mark()
    harness.write(harness.dyno("web.1", slug, release="eight"))  # web.2 removed, web.1 broken
    agent.signal(signal.SIGHUP)
    agent.wait_for(r"hello heroku\[web\.2\]: State changed from stopping to down", after=mark)
    agent.wait_for(r"dynos\[0\] \(hello web\.1\): release must be a positive integer, got 'eight' \(the dyno already running under that name is kept\)", stream="err")
    assert http_json(address)["pid"] == pid
    agent.wait_until(lambda: set(agent.dynos()) == {"hello web.1"}, what="web.2 gone from /dynos")


def test_rapid_sighups_never_run_a_dyno_twice(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("web.1", slug))
    agent = harness.start()
    agent.wait_up("web.1")
    for release in range(2, 7):
        harness.write(harness.dyno("web.1", slug, release=release))
        agent.signal(signal.SIGHUP)
    agent.wait_until(lambda: agent.dynos().get("hello web.1", {}).get("release") == 6
                     and agent.dynos()["hello web.1"]["state"] == "up", what="release 6 up")
    running = marked_processes(harness.run_id)
    assert set(running) == {"web.1"}
    assert len({sid for _, sid in running["web.1"]}) == 1
