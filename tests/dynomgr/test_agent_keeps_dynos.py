"""Upgrading the agent without restarting apps: `--keep-dynos` / SIGUSR2 hand the running dynos
over to the next agent on the data dir, which adopts them (same processes, same ports), watches
their output, exits and memory again, and stops or restarts them by the usual rules."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from tests.conftest import free_port
from tests.dynomgr.conftest import http_json, marked_processes, pid_alive

ADOPTED = r"hello heroku\[{dyno}\]: Adopted by a new dyno manager \(pid (\d+), still up\)$"


def _kept_run(harness, *entries, flags=None):
    """Start an agent on `entries` with --keep-dynos, wait for every dyno to be up, stop it
    with SIGTERM; returns (the stopped run, {dyno: pid})."""
    harness.write(*entries)
    agent = harness.start("--keep-dynos", flags=flags)
    names = [e["name"] for e in entries]
    for name in names:
        agent.wait_for(r"heroku\[" + re.escape(name) + r"\]: State changed from starting to up")

    def running() -> dict[str, int] | None:
        pids = {d["name"]: d["pid"] for d in agent.dynos().values() if d["state"] == "up" and d["pid"]}
        return pids if sorted(pids) == sorted(names) else None

    pids = agent.wait_until(running, what="every dyno up with a pid")
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit() == 0
    agent.wait_for(r"exiting; %d of %d dynos left running" % (len(names), len(names)), stream="err")
    return agent, pids


def test_a_kept_dyno_runs_on_and_the_next_agent_adopts_it_without_a_restart(harness):
    slug = harness.slugs.make("web: python web.py\nworker: python ticker.py\n")
    old, pids = _kept_run(harness, harness.dyno("web.1", slug), harness.dyno("worker.1", slug))
    address = old.wait_up("web.1")
    # Nobody watches them now: they run, and the web dyno answers.
    assert all(pid_alive(pid) for pid in pids.values())
    # web.py runs under the dyno's shell: it is in the session the kept pid leads.
    assert os.getsid(http_json(address)["pid"]) == pids["web.1"]
    assert not old.count(r"State changed from up to (stopping|down)")

    new = harness.start()
    new.wait_for(ADOPTED.format(dyno=r"web\.1"))
    new.wait_for(ADOPTED.format(dyno=r"worker\.1"))
    dynos = new.dynos()
    assert {k: (d["pid"], d["state"]) for k, d in dynos.items()} == {
        "hello web.1": (pids["web.1"], "up"), "hello worker.1": (pids["worker.1"], "up")}
    assert dynos["hello web.1"]["address"] == address  # same port: routers keep routing
    assert http_json(address)["port"] == address.rsplit(":", 1)[1]
    assert new.count(r"State changed") == 0  # no restart, not even a report of one
    assert new.count(r"Starting process") == 0
    assert new.metric("dynomgr_dynos_adopted_total") == 2

    # A dyno killed after adoption is seen to end (it is not our child) and restarted.
    mark = new.mark()
    os.kill(pids["worker.1"], signal.SIGKILL)
    _, mark = new.wait_line(r"hello heroku\[worker\.1\]: Process exited \(status unknown", after=mark)
    _, mark = new.wait_line(r"hello heroku\[worker\.1\]: State changed from up to crashed$", after=mark)
    new.wait_line(r"hello heroku\[worker\.1\]: State changed from crashed to starting$", after=mark)
    new.wait_for(r"hello app\[worker\.1\]: tick 0 part2$", after=mark)
    assert pid_alive(pids["web.1"])


def test_no_output_line_is_lost_or_repeated_across_the_handover(harness):
    slug = harness.slugs.make("worker: python ticker.py\n")
    entry = harness.dyno("worker.1", slug, env={"PAUSE": "0.002"})
    old, _ = _kept_run(harness, entry)
    new = harness.start()
    new.wait_for(ADOPTED.format(dyno=r"worker\.1"))
    last = int(new.wait_for(r"app\[worker\.1\]: tick (\d+) ").group(1)) + 200
    new.wait_for(rf"app\[worker\.1\]: tick {last} part2$")
    line = re.compile(r"app\[worker\.1\]: (.*)$")
    texts = [m.group(1) for m in map(line.search, old.out + new.out) if m]
    ticks = [int(t.split()[1]) for t in texts if t.startswith("tick ")]
    assert all(re.fullmatch(r"tick \d+ part2", t) for t in texts), "a line was cut at the handover"
    assert ticks[:last + 1] == list(range(last + 1))


def test_a_line_half_read_by_the_old_agent_is_finished_by_the_new_one(harness):
    slug = harness.slugs.make("worker: python halfline.py\n")
    harness.write(harness.dyno("worker.1", slug))
    old = harness.start("--keep-dynos")
    pid = int(old.wait_for(r"app\[worker\.1\]: ready pid=(\d+)$").group(1))
    old.signal(signal.SIGTERM)
    assert old.wait_exit() == 0
    (record,) = [json.loads(p.read_text()) for p in (harness.data_dir / "run").glob("*.json")]
    out, err = record["kept"]["outputs"]
    assert out["path"].endswith(".out") and bytes.fromhex(out["tail"]) == b"first half, "
    assert err["path"].endswith(".err") and err["tail"] == ""
    new = harness.start()
    new.wait_for(ADOPTED.format(dyno=r"worker\.1"))
    os.kill(pid, signal.SIGUSR1)
    new.wait_for(r"hello app\[worker\.1\]: first half, second half$")
    assert not old.count(r"first half")


def test_a_kept_dyno_that_died_meanwhile_is_reported_crashed_and_restarted(harness):
    slug = harness.slugs.make("web: python web.py\n")
    _, pids = _kept_run(harness, harness.dyno("web.1", slug))
    os.kill(pids["web.1"], signal.SIGKILL)
    new = harness.start()
    _, mark = new.wait_line(r"hello heroku\[web\.1\]: Process %d ended while no dyno manager watched it$" % pids["web.1"])
    _, mark = new.wait_line(r"hello heroku\[web\.1\]: State changed from up to crashed$", after=mark)
    new.wait_up("web.1", after=mark)
    assert http_json(new.dynos()["hello web.1"]["address"])["pid"] != pids["web.1"]
    # Its old life's record, FIFO and directory are gone; only the new life's remain.
    run = harness.data_dir / "run"
    assert len(list(run.glob("*.json"))) == 1 and len(list(run.glob("*.out"))) == 1
    assert len(list((harness.data_dir / "dynos" / "hello").iterdir())) == 1


def test_a_kept_dyno_no_longer_assigned_is_stopped_after_adoption(harness):
    slug = harness.slugs.make("web: python web.py\nworker: python ticker.py\n")
    _, pids = _kept_run(harness, harness.dyno("web.1", slug), harness.dyno("worker.1", slug))
    harness.write(harness.dyno("web.1", slug))
    new = harness.start()
    _, mark = new.wait_line(ADOPTED.format(dyno=r"worker\.1"))
    _, mark = new.wait_line(r"hello heroku\[worker\.1\]: Stopping: no longer assigned to this VM$")
    new.wait_line(r"hello heroku\[worker\.1\]: State changed from stopping to down$", after=mark)
    assert not pid_alive(pids["worker.1"])
    assert new.dynos()["hello web.1"]["pid"] == pids["web.1"]


def test_a_kept_dyno_whose_release_changed_is_replaced(harness):
    slug = harness.slugs.make("web: python web.py\n")
    _, pids = _kept_run(harness, harness.dyno("web.1", slug))
    harness.write(harness.dyno("web.1", slug, release=2))
    new = harness.start()
    _, mark = new.wait_line(r"hello heroku\[web\.1\]: Restarting for release v2$")
    new.wait_up("web.1", after=mark)
    assert not pid_alive(pids["web.1"])


def _hog_handed_over(harness):
    """A hog dyno (100 MB quota, holding 70 MB, 70 MB more on each SIGUSR1: about 10 MB of
    interpreter come on top) handed over by SIGUSR2 (without --keep-dynos); returns the hog's pid."""
    slug = harness.slugs.make("worker: python hog.py\n")
    harness.write(harness.dyno("worker.1", slug, memory_mb=100,
                               env={"STEP_MB": "70", "GROW_ON_SIGNAL": "1", "MAX_MB": "400"}))
    old = harness.start()
    pid = int(old.wait_for(r"app\[worker\.1\]: hog pid=(\d+)$").group(1))
    old.wait_for(r"app\[worker\.1\]: holding 70 MB")
    old.signal(signal.SIGUSR2)
    assert old.wait_exit() == 0
    assert not old.count(r"Error R1[45]")
    return pid


def _grow_to_r14_then_r15(agent, pid, mark):
    """Grow the hog past its quota (R14), then past twice its quota (R15: it is killed)."""
    os.kill(pid, signal.SIGUSR1)
    _, mark = agent.wait_line(r"hello app\[worker\.1\]: holding 140 MB$", after=mark)
    _, mark = agent.wait_line(r"hello heroku\[worker\.1\]: Error R14 \(Memory quota exceeded\)$", after=mark)
    os.kill(pid, signal.SIGUSR1)
    _, mark = agent.wait_line(r"hello app\[worker\.1\]: holding 210 MB$", after=mark)
    _, mark = agent.wait_line(r"hello heroku\[worker\.1\]: Error R15 \(Memory quota vastly exceeded\)$", after=mark)
    agent.wait_line(r"hello heroku\[worker\.1\]: State changed from up to crashed$", after=mark)
    assert not pid_alive(pid)


def test_memory_quotas_apply_to_an_adopted_dyno(harness):
    pid = _hog_handed_over(harness)
    new = harness.start(flags={"--restart-base": "30", "--restart-cap": "30"})
    _, mark = new.wait_line(ADOPTED.format(dyno=r"worker\.1"))
    _grow_to_r14_then_r15(new, pid, mark)


def test_memory_quotas_apply_to_an_adopted_dyno_while_the_control_plane_is_away(harness):
    pid = _hog_handed_over(harness)
    token_file = harness.root / "dynomgr.token"
    token_file.write_text("dmt_unused\n")
    nobody = f"http://127.0.0.1:{free_port()}"  # no control plane: the first snapshot never comes
    new = harness.start(flags={"--restart-base": "30", "--restart-cap": "30"},
                        source=["--control", nobody, "--token-file", str(token_file)])
    _, mark = new.wait_line(ADOPTED.format(dyno=r"worker\.1"))
    _grow_to_r14_then_r15(new, pid, mark)


def test_a_plain_stop_still_stops_every_dyno_and_ctrl_c_does_even_with_keep_dynos(harness):
    slug = harness.slugs.make("worker: python ticker.py\n")
    harness.write(harness.dyno("worker.1", slug))
    for extra, sig in (((), signal.SIGTERM), (("--keep-dynos",), signal.SIGINT)):
        agent = harness.start(*extra)
        agent.wait_for(r"heroku\[worker\.1\]: State changed from starting to up")
        pid = agent.wait_until(lambda: agent.dynos()["hello worker.1"]["pid"], what="a pid")
        agent.signal(sig)
        assert agent.wait_exit() == 0
        agent.wait_for(r"heroku\[worker\.1\]: State changed from stopping to down")
        assert not pid_alive(pid)
        run = harness.data_dir / "run"
        assert not list(run.glob("*.json")) and not list(run.glob("*.out")) and not list(run.glob("*.err"))
        assert not list((harness.data_dir / "dynos").glob("*/*"))


def test_an_agent_that_crashed_after_adopting_leaves_the_dyno_to_be_stopped_not_adopted(harness):
    # design.md: an agent that crashed stops what it left; the hand-over ends at adoption.
    slug = harness.slugs.make("worker: python ticker.py\n")
    _, pids = _kept_run(harness, harness.dyno("worker.1", slug))
    adopter = harness.start()
    adopter.wait_for(ADOPTED.format(dyno=r"worker\.1"))
    (record,) = [json.loads(p.read_text()) for p in (harness.data_dir / "run").glob("*.json")]
    assert "kept" not in record and record["pid"] == pids["worker.1"]
    adopter.proc.kill()
    adopter.wait_exit()
    third = harness.start()
    third.wait_for(r"stopping hello worker\.1 left running by a previous dyno manager \(pids %d[,)]" % pids["worker.1"],
                   stream="err")
    third.wait_for(r"hello heroku\[worker\.1\]: Starting process")
    assert not pid_alive(pids["worker.1"])
    assert not third.count(r"Adopted by a new dyno manager")


@pytest.mark.parametrize("damage", ["removed", "replaced by a file"])
def test_a_kept_dyno_whose_output_cannot_be_read_is_restarted_not_left_to_block(harness, damage):
    slug = harness.slugs.make("worker: python ticker.py\n")
    _, pids = _kept_run(harness, harness.dyno("worker.1", slug))
    (fifo,) = (harness.data_dir / "run").glob("*.out")
    fifo.unlink()
    if damage == "replaced by a file":
        fifo.write_text("")  # not a FIFO: reading it would never see the dyno's output
    new = harness.start()
    _, mark = new.wait_line(r"hello heroku\[worker\.1\]: Error: cannot read the output of pid %d .*; restarting it$"
                            % pids["worker.1"])
    _, mark = new.wait_line(r"hello heroku\[worker\.1\]: State changed from stopping to down$", after=mark)
    new.wait_for(r"hello app\[worker\.1\]: tick 0 part2$", after=mark)
    assert not pid_alive(pids["worker.1"])
    # One copy runs, not the old one left orphaned beside a new one.
    assert len(marked_processes(harness.run_id)["worker.1"]) >= 1
    assert {sid for _, sid in marked_processes(harness.run_id)["worker.1"]} == {new.dynos()["hello worker.1"]["pid"]}


def test_a_stop_while_the_agent_stops_leftovers_ends_it_in_order(harness):
    slug = harness.slugs.make("worker: python stubborn.py\n")
    harness.write(harness.dyno("worker.1", slug))
    crashed = harness.start()
    crashed.wait_for(r"app\[worker\.1\]: stubborn pid=")
    crashed.proc.kill()  # leaves a dyno that ignores SIGTERM
    crashed.wait_exit()
    new = harness.start(flags={"--stop-timeout": "5"})
    new.wait_for(r"stopping hello worker\.1 left running by a previous dyno manager", stream="err")
    new.signal(signal.SIGTERM)  # while the leftover is given its stop timeout
    assert new.wait_exit() == 0
    assert not marked_processes(harness.run_id)
    assert not new.count(r"Starting process")
