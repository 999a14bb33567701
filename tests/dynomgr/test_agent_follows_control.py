"""`dynomesh dynomgr --control URL --token-file F`: a real agent and real dynos following a
scripted control plane (docs/feeds.md): registration, the assignment feed, state reports,
slugs fetched with the agent's token, and what happens while the control plane is away."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from dynomesh.stack import discover
from tests.conftest import dynomesh_argv, dynomesh_env, free_port
from tests.dynomgr.conftest import FAST_FLAGS, AgentRun, http_json, marked_processes
from tests.feedserver import ROUTER_TOKEN, TOKEN, ScriptedControlPlane


@pytest.fixture
def control():
    server = ScriptedControlPlane(heartbeat=0.2).start()
    yield server
    server.close()


def follow(harness, control: ScriptedControlPlane, *extra: str, token: str = TOKEN) -> AgentRun:
    """Start an agent following `control` (admin on a free port, fast timeouts)."""
    token_file = harness.root / "dynomgr.token"
    token_file.write_text(token + "\n")
    admin_port = free_port()
    argv = dynomesh_argv("dynomgr", "--control", control.url, "--token-file", str(token_file),
                         "--data-dir", str(harness.data_dir), "--admin", f"127.0.0.1:{admin_port}",
                         "--address", "127.0.0.1", "--no-cycling", *extra)
    for flag, value in FAST_FLAGS.items():
        argv += [flag, value]
    run = AgentRun(argv, dynomesh_env(), admin_port)
    harness.runs.append(run)
    return run


def served_slug(harness, control: ScriptedControlPlane, procfile: str, slug_id: str) -> dict:
    """A slug the control plane serves at /slugs/<id>/download (token required)."""
    local = harness.slugs.make(procfile)
    data = Path(local["url"].removeprefix("file://")).read_bytes()
    return {"url": control.add_slug(slug_id, data), "sha256": local["sha256"]}


def changes(control: ScriptedControlPlane) -> list[dict]:
    """Every OBSERVED change posted to /vms/vm-1/states, in order."""
    return [c for r in control.recorded("POST", "/vms/vm-1/states") for c in r.body["changes"]]


def reported(control, dyno_id: str, state: str) -> dict | None:
    return next((c for c in changes(control) if c["id"] == dyno_id and c["state"] == state), None)


def told(control, dyno_id: str, state: str) -> bool:
    """The control plane heard it: as a change, or in a heartbeat's full state (which
    supersedes changes still held for the dynos it lists)."""
    return reported(control, dyno_id, state) is not None or any(
        d["id"] == dyno_id and d["state"] == state
        for beat in control.recorded("POST", "/vms/vm-1/heartbeat") for d in beat.body["dynos"])


def healthz(agent: AgentRun) -> dict:
    status, body = agent.get("/healthz")
    assert status == 200
    return json.loads(body)


def test_the_agent_registers_runs_its_assignments_and_reports_up_with_the_address(harness, control):
    slug = served_slug(harness, control, "web: python web.py\n", "s-1")
    control.assign(harness.dyno("web.1", slug, id="d-1"))
    agent = follow(harness, control, "--capacity-mb", "2048")

    registered = control.wait_for(lambda: control.recorded("PUT", "/vms/vm-1"), what="register")
    stack = {"interpreters": [i.to_json() for i in discover()]}
    assert registered[0].body == {"address": "127.0.0.1", "capacity_mb": 2048,
                                  "ports": [20000, 29999], "version": "0.1.0", "stack": stack}
    assert stack["interpreters"], "this machine's python3 is offered to dynos"
    address = agent.wait_up("web.1")
    # The `up` change is posted as it happens (not left for the next heartbeat).
    up = control.wait_for(lambda: reported(control, "d-1", "up"), what="up posted to /states")
    assert up["address"] == address and up["app"] == "hello" and up["name"] == "web.1"
    assert up["release"] == 1 and up["restarts"] == 0 and isinstance(up["since"], float)
    assert [c["state"] for c in changes(control) if c["id"] == "d-1"][:2] == ["starting", "up"]
    assert http_json(address)["dyno"] == "web.1"
    # The slug came from the control plane, fetched with the agent's token.
    assert control.recorded("GET", "/slugs/s-1/download")
    assert control.recorded("GET", "/account")
    beats = control.wait_for(lambda: control.recorded("POST", "/vms/vm-1/heartbeat"), what="heartbeat")
    assert all(isinstance(b.body["dynos"], list) for b in beats)
    state = healthz(agent)["control"]
    assert state["following"] and state["revision"] == control.revision and state["vm"] == "vm-1"


def test_dynos_keep_running_and_restarting_while_the_control_plane_is_away_then_converge(harness, control):
    slug = served_slug(harness, control, "web: python web.py\n", "s-1")
    control.assign(harness.dyno("web.1", slug, id="d-1"))
    agent = follow(harness, control)
    address = agent.wait_up("web.1")
    control.wait_for(lambda: reported(control, "d-1", "up"), what="up reported")
    registrations = len(control.recorded("PUT", "/vms/vm-1"))
    seen = control.revision

    control.go_away()
    agent.wait_until(lambda: not healthz(agent)["control"]["following"], what="not following")
    assert http_json(address)["dyno"] == "web.1"  # still serving
    mark = agent.mark()
    pid = http_json(address)["pid"]
    os.kill(pid, signal.SIGKILL)  # a crash while the control plane is away: restarted all the same
    agent.wait_for(r"hello heroku\[web\.1\]: State changed from up to crashed", after=mark)
    agent.wait_up("web.1", after=mark)
    assert agent.metric("dynomgr_control_plane_reachable") == 0

    # Meanwhile the control plane moved web.1 elsewhere and gave this VM a web.2.
    control.change(assignments=[harness.dyno("web.2", slug, id="d-2")], removed_assignments=["d-1"])
    mark = agent.mark()
    control.come_back()
    agent.wait_up("web.2", after=mark)
    agent.wait_for(r"hello heroku\[web\.1\]: State changed from stopping to down", after=mark)
    # It registered again, resumed after what it had seen, and sent its whole state.
    control.wait_for(lambda: len(control.recorded("PUT", "/vms/vm-1")) > registrations,
                     what="a second registration")
    resumed = control.feed_connections("assignments")[-1]
    assert resumed.since == seen and resumed.sent[0]["type"] == "delta"
    control.wait_for(lambda: told(control, "d-1", "down"), what="web.1 down reported")
    control.wait_for(lambda: told(control, "d-2", "up"), what="web.2 up reported")
    state = healthz(agent)["control"]
    assert state["following"] and state["reporting"] and state["reconnects"] >= 1
    assert set(marked_processes(harness.run_id)) == {"web.2"}


def test_two_web_1_of_one_app_run_side_by_side_by_id_and_a_restart_counter_restarts_one(harness, control):
    v1 = served_slug(harness, control, "web: python web.py\n", "s-1")
    v2 = served_slug(harness, control, "web: python web.py\n", "s-2")
    control.assign(harness.dyno("web.1", v1, id="d-old", release=1))
    agent = follow(harness, control)
    old = agent.wait_up("web.1")

    mark = agent.mark()  # a preboot: the new release's web.1 starts beside the old one
    control.assign(harness.dyno("web.1", v2, id="d-new", release=2))
    new = agent.wait_up("web.1", after=mark)
    assert new != old and http_json(old)["dyno"] == http_json(new)["dyno"] == "web.1"
    new_pid = http_json(new)["pid"]

    mark = agent.mark()  # the switch: the old one goes, the new one is untouched
    control.unassign("d-old")
    agent.wait_for(r"hello heroku\[web\.1\]: State changed from stopping to down", after=mark)
    assert http_json(new)["pid"] == new_pid
    assert len({session for _, session in marked_processes(harness.run_id)["web.1"]}) == 1

    mark = agent.mark()  # `ps:restart`: only the restart counter changes
    control.assign(harness.dyno("web.1", v2, id="d-new", release=2, restart=1))
    agent.wait_for(r"hello heroku\[web\.1\]: Restarting$", after=mark)
    restarted = agent.wait_up("web.1", after=mark)
    assert http_json(restarted)["pid"] != new_pid


def test_a_control_plane_that_forgot_the_vm_gets_it_registered_again(harness, control):
    slug = served_slug(harness, control, "web: python web.py\n", "s-1")
    control.assign(harness.dyno("web.1", slug, id="d-1"))
    agent = follow(harness, control)
    address = agent.wait_up("web.1")
    control.wait_for(lambda: reported(control, "d-1", "up"), what="up reported")
    registrations = len(control.recorded("PUT", "/vms/vm-1"))
    control.forget_vm = True  # reports now get 404 until the VM registers again
    mark = agent.mark()
    os.kill(http_json(address)["pid"], signal.SIGKILL)
    agent.wait_up("web.1", after=mark)

    def full_state_after_registering_again():
        puts = control.recorded("PUT", "/vms/vm-1")
        if len(puts) <= registrations:
            return False
        again = puts[registrations].at
        return [d for beat in control.recorded("POST", "/vms/vm-1/heartbeat") if beat.at > again
                for d in beat.body["dynos"] if d["id"] == "d-1"]

    (dyno, *_) = control.wait_for(full_state_after_registering_again,
                                  what="registration and the full state after a 404")
    assert dyno["name"] == "web.1" and dyno["restarts"] >= 1


@pytest.mark.parametrize("token, words", [
    ("dmt_wrong", r"refused this agent's token \(HTTP 401"),
    (ROUTER_TOKEN, r"this is a router token; a dyno manager needs a dynomgr token"),
])
def test_a_token_the_control_plane_refuses_ends_the_agent_with_status_2(harness, control, token, words):
    agent = follow(harness, control, token=token)
    assert agent.wait_exit(30) == 2
    assert any(re.search(words, line) for line in agent.err), agent.err
