"""One-off dynos on a dyno manager (from an assignments file): they run their own command
once, end `down` whatever their status, and stop at their time limit; formation dynos that
exit 0 are restarted (tests/dynomgr/test_agent_failures.py)."""

from __future__ import annotations

from tests.dynomgr.conftest import pid_alive


def test_a_one_off_dyno_runs_its_command_once_and_ends_down(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("run.4821", slug, kind="one-off",
                               command="echo once from $DYNO; exit 3"))
    agent = harness.start(flags={"--restart-base": "0.1", "--restart-cap": "0.1"})
    agent.wait_for(r"hello heroku\[run\.4821\]: Starting process with command `echo once")
    agent.wait_for(r"hello app\[run\.4821\]: once from run\.4821")
    agent.wait_for(r"hello heroku\[run\.4821\]: Process exited with status 3")
    agent.wait_for(r"hello heroku\[run\.4821\]: State changed from up to down")
    # `down`, not `crashed`: a formation dyno that exits is crashed and started again at once.
    dyno = agent.dynos()["hello run.4821"]
    assert dyno["state"] == "down" and dyno["restarts"] == 0
    assert agent.count(r"heroku\[run\.4821\]: Starting process") == 1


def test_a_one_off_dyno_exiting_0_is_not_restarted(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("run.1", slug, kind="one-off", command="echo done"))
    agent = harness.start()
    agent.wait_for(r"hello heroku\[run\.1\]: State changed from up to down")
    assert agent.dynos()["hello run.1"]["restarts"] == 0


def test_a_one_off_dyno_is_stopped_at_its_time_limit(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("run.7", slug, kind="one-off", timeout=1,
                               command="echo pid $$; exec sleep 600"))
    agent = harness.start()
    pid = int(agent.wait_for(r"hello app\[run\.7\]: pid (\d+)").group(1))
    agent.wait_for(r"hello heroku\[run\.7\]: Stopping: it ran for its whole time limit \(1 s\)")
    agent.wait_for(r"hello heroku\[run\.7\]: State changed from stopping to down")
    assert not pid_alive(pid)
    assert agent.count(r"heroku\[run\.7\]: Starting process") == 1


def test_a_one_off_dyno_whose_agent_was_killed_is_not_run_again_by_the_next(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("run.9", slug, kind="one-off", id="d-run-9",
                               command="echo pid $$; exec sleep 600"))
    first = harness.start()
    pid = int(first.wait_for(r"hello app\[run\.9\]: pid (\d+)").group(1))
    first.proc.kill()  # SIGKILL: the one-off outlives its agent, for now
    first.wait_exit()

    second = harness.start()
    second.wait_for(r"dynomgr: stopping hello run\.9 left running by a previous dyno manager",
                    stream="err")
    second.wait_for(r"hello heroku\[run\.9\]: Not starting: its dyno manager stopped while it "
                    r"ran; a one-off dyno is not run again")
    second.wait_for(r"hello heroku\[run\.9\]: State changed from starting to down")
    assert not pid_alive(pid)
    assert second.count(r"heroku\[run\.9\]: Starting process") == 0
