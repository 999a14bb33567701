"""Upgrading a VM's agent does not restart its apps: the dyno manager exits with SIGUSR2 (or
SIGTERM under --keep-dynos), a new one on the same data dir adopts the running dynos, and the
control plane and the router never see them go: same dyno ids, same addresses, no restart, no
failed request, and their output after the upgrade reaches the app's log.

The parts run as separate processes (`dynomesh control`, `router --control`, `dynomgr
--control`), as in test_control_plane_outage.py, so the test can replace the agent.
"""

from __future__ import annotations

import signal

import pytest

from tests.conftest import dynomesh_argv, dynomesh_env
from tests.e2e.harness import LoadLoop, ProcessLines, hello_variant, poll, web_up
from tests.e2e.test_control_plane_outage import parts  # noqa: F401 (the fixture: control, router, dynomgr)

pytestmark = pytest.mark.timeout(240)


def test_an_agent_upgrade_keeps_every_dyno_serving_without_a_restart(parts, tmp_path):  # noqa: F811
    cli, api = parts.cli, parts.api
    app = "e2e-upgrade"
    cli.ok("apps:create", app, "--no-link")
    cli.ok("deploy", str(hello_variant(tmp_path, "one")), "--app", app)
    cli.ok("ps:scale", "web=2", "--app", app)
    poll(lambda: web_up(api.dynos(app), 2, release=1), "2 web dynos up")
    before = {d["id"]: (d["name"], d["address"], d["restarts"]) for d in api.dynos(app)}

    with LoadLoop(parts.routing, app, clients=1, max_requests=30000, max_seconds=150) as load:
        load.wait_for_body(lambda body: body.startswith("one: "), count=20)
        old = parts.dynomgr
        assert old.stop(signal.SIGUSR2) == 0
        old.wait_for(r"dynomgr: exiting; 2 of 2 dynos left running for the next dyno manager")
        served = load.result.requests
        load.wait_for_body(lambda body: body.startswith("one: "), count=served + 20)  # no agent

        parts.dynomgr = new = ProcessLines(
            dynomesh_argv(*old.proc.args[old.proc.args.index("dynomgr"):]), dynomesh_env(),
            name="dynomgr (upgraded)")
        for name in ("web.1", "web.2"):
            new.wait_for(rf"{app} heroku\[{name}\]: Adopted by a new dyno manager \(pid \d+, still up\)")
        new.wait_for(r"dynomgr: running 2 dynos from assignment feed")
        served = load.result.requests
        load.wait_for_body(lambda body: body.startswith("one: "), count=served + 50)
    assert load.result.failures == 0, dict(load.result.outcomes)

    after = {d["id"]: (d["name"], d["address"], d["restarts"]) for d in api.dynos(app)}
    assert after == before and web_up(api.dynos(app), 2, release=1)
    assert not new.matches(r"State changed") and not new.matches(r"Starting process")
    # Output written after the upgrade reaches the app's log through the new agent.
    parts.routing.get(app, "/after-the-upgrade")
    poll(lambda: "/after-the-upgrade" in cli.ok("logs", "-n", "200", "--source", "app", "--app", app),
         "the request line of the adopted dyno in `dynomesh logs`")
    # The control plane changing its mind is obeyed as for any dyno.
    cli.ok("ps:scale", "web=1", "--app", app)
    new.wait_for(rf"{app} heroku\[web\.2\]: State changed from stopping to down")
