"""The control plane dies (SIGKILL) in the middle of a deploy: the router keeps routing on its
last table, the dyno manager keeps its dynos, and once the control plane is back everything
converges on the new release without a failed request.

The parts run as separate processes here (`dynomesh control`, `dynomesh router --control`,
`dynomesh dynomgr --control`, as on separate machines), so the test decides how long the
control plane stays away.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import dynomesh_argv, dynomesh_env, free_port
from tests.e2e.harness import (Api, Cli, LoadLoop, ProcessLines, RouterClient, hello_variant,
                               poll, shared_tmpdir, web_up)

pytestmark = pytest.mark.timeout(240)


class Parts:
    """`dynomesh control`, a router and a dyno manager started one by one, as the README's
    distributed set-up does, on free ports."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.api_port, self.http_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.control = self.start_control()
        self.cli = Cli(home)
        for role, extra in (("router", ()), ("dynomgr", ("--vm-id", "vm-e2e"))):
            token = self.cli.ok("tokens:create", "--role", role, *extra).strip()
            path = home / f"{role}.token"
            path.write_text(token + "\n")
            path.chmod(0o600)
        self.router_admin = f"http://127.0.0.1:{free_port()}"
        self.router = ProcessLines(dynomesh_argv(
            "router", "--listen", f"127.0.0.1:{self.http_port}",
            "--admin", self.router_admin.removeprefix("http://"),
            "--control", self.api_url, "--token-file", str(home / "router.token")),
            dynomesh_env(), name="router")
        self.router.wait_for(r"^dynomesh router: ready on ")
        self.dynomgr_admin = f"http://127.0.0.1:{free_port()}"
        self.dynomgr = ProcessLines(dynomesh_argv(
            "dynomgr", "--control", self.api_url, "--token-file", str(home / "dynomgr.token"),
            "--admin", self.dynomgr_admin.removeprefix("http://"),
            "--data-dir", str(home / "dynos"), "--address", "127.0.0.1"),
            dynomesh_env(), name="dynomgr")
        self.dynomgr.wait_for(r"dynomgr: running \d+ dynos from assignment feed")
        self.api = Api(home)
        self.routing = RouterClient(self.http_port)

    def start_control(self) -> ProcessLines:
        control = ProcessLines(dynomesh_argv(
            "control", "--listen", f"127.0.0.1:{self.api_port}", "--home", str(self.home),
            "--router-port", str(self.http_port)), dynomesh_env(), name="control")
        control.wait_for(r"^dynomesh control: listening on ")
        return control

    def readyz(self) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.router_admin}/readyz", timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def agent_following(self) -> bool:
        with urllib.request.urlopen(f"{self.dynomgr_admin}/healthz", timeout=10) as response:
            return json.loads(response.read())["control"]["following"]

    def stop(self) -> None:
        for part in (self.router, self.dynomgr, self.control):
            part.kill()


@pytest.fixture
def parts():
    home = shared_tmpdir("dynomesh-e2e-outage-")
    started = None
    try:
        started = Parts(home)
        yield started
    finally:
        if started is not None:
            started.stop()
        shutil.rmtree(home, ignore_errors=True)


def gated_hello(workdir: Path, tag: str, gate: Path) -> Path:
    """hello (answering `tag: ...`) whose web dynos do not start serving until `gate` exists:
    the test holds the deploy half-way for as long as it needs."""
    app = hello_variant(workdir, tag)
    (app / "Procfile").write_text(
        f"web: while [ ! -e {gate} ]; do sleep 0.05; done; exec python3 web.py\n"
        "worker: python3 worker.py\n")
    return app


def test_sigkill_of_the_control_plane_mid_deploy_keeps_routing_then_converges(parts, tmp_path):
    cli, api = parts.cli, parts.api
    app = "e2e-outage"
    cli.ok("apps:create", app, "--no-link")
    cli.ok("features:enable", "preboot", "--app", app)
    cli.ok("deploy", str(hello_variant(tmp_path, "one")), "--app", app)
    cli.ok("ps:scale", "web=2", "--app", app)
    poll(lambda: web_up(api.dynos(app), 2, release=1), "2 web dynos up on v1")
    gate = parts.home / "gate"

    with LoadLoop(parts.routing, app, clients=1, max_requests=30000, max_seconds=150) as load:
        load.wait_for_body(lambda body: body.startswith("one: "), count=20)
        launched = parts.dynomgr.mark()
        cli.ok("deploy", str(gated_hello(tmp_path, "two", gate)), "--app", app)
        poll(lambda: sum(1 for d in api.dynos(app) if d["release"]["version"] == 2
                         and d["state"] == "starting" and not d["serving"]) == 2,
             "2 preboot dynos of v2 starting")
        # `starting` is reported before the slug is fetched: wait until both processes run
        # (held at the gate), so that no slug download meets the dead control plane.
        for _ in range(2):
            _, launched = parts.dynomgr.wait_line(
                rf"{app} heroku\[web\.\d\]: Starting process with command `while", after=launched)

        mark = parts.router.mark()
        parts.control.proc.send_signal(signal.SIGKILL)
        parts.control.proc.wait(10)
        parts.router.wait_for(r"route feed: lost .*; routing on the table of revision", after=mark)
        # Both followers say so, and stay up: the router ready on its last table.
        status, text = poll(lambda: (r := parts.readyz()) and "; not following" in r[1] and r,
                            "/readyz to say the router does not follow")
        assert status == 200 and text.startswith("ready: "), text
        poll(lambda: not parts.agent_following(), "the dyno manager's /healthz to say so")
        served = load.result.requests
        load.wait_for_body(lambda body: body.startswith("one: "), count=served + 100)

        # The new dynos come up while nobody can switch the routes: v1 keeps serving.
        agent_mark = parts.dynomgr.mark()
        gate.touch()
        for _ in range(2):
            _, agent_mark = parts.dynomgr.wait_line(
                rf"{app} heroku\[web\.\d\]: State changed from starting to up", after=agent_mark)
        served = load.result.requests
        load.wait_for_body(lambda body: body.startswith("one: "), count=served + 50)
        assert not any(body.startswith("two: ") for body in load.result.bodies)

        parts.control = parts.start_control()
        parts.control.wait_for(rf"{app} heroku\[api\]: Preboot: switched to v2", timeout=60)
        poll(lambda: "; following http" in parts.readyz()[1] and parts.agent_following(),
             "the router and the dyno manager following again")
        load.wait_for_body(lambda body: body.startswith("two: "), count=100)
    result = load.result
    assert result.failures == 0, dict(result.outcomes)

    def converged():
        dynos = api.try_dynos(app)
        return dynos is not None and web_up(dynos, 2, release=2) and len(dynos) == 2

    poll(converged, "exactly 2 web dynos, up on v2", timeout=60)
    # The old v1 dynos were stopped on the VM too: only the two new ones still run there.
    parts.dynomgr.wait_for(rf"{app} heroku\[web\.1\]: State changed from stopping to down")
    parts.dynomgr.wait_for(rf"{app} heroku\[web\.2\]: State changed from stopping to down")
    answers = [parts.routing.get(app).text for _ in range(10)]
    assert all(text.startswith("two: Hello from web.") for text in answers), answers
    ps = cli.ok("ps", "--app", app)
    assert len(re.findall(r"^web\.\d +up +.* v2 ", ps, re.M)) == 2, ps


def test_a_release_phase_outlives_a_control_plane_crash_and_settles_its_release(parts,
                                                                                tmp_path):
    """docs/attach.md: the pending release and its release phase are committed together; the
    dyno manager runs it on while the control plane is away and reports its end on return."""
    cli, api = parts.cli, parts.api
    app = "e2e-phase-outage"
    cli.ok("apps:create", app, "--no-link")
    cli.ok("deploy", str(hello_variant(tmp_path, "one")), "--app", app)
    poll(lambda: web_up(api.dynos(app), 1, release=1), "web.1 up on v1")
    gate = parts.home / "phase-gate"
    source = hello_variant(tmp_path, "two")
    (source / "Procfile").write_text(
        "web: python3 web.py\n"
        f"release: while [ ! -e {gate} ]; do sleep 0.05; done; echo migrated\n")
    deploy = subprocess.Popen(dynomesh_argv("deploy", str(source), "--app", app),
                              env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        phase = poll(lambda: next((d for d in api.dynos(app) if d["type"] == "release"
                                   and d["state"] == "up"), None), "the release phase up")
        parts.control.proc.send_signal(signal.SIGKILL)
        parts.control.proc.wait(10)
        deploy.wait(60)  # its wait for the release phase fails with the control plane
    finally:
        if deploy.poll() is None:
            deploy.kill()
    agent_mark = parts.dynomgr.mark()
    gate.touch()  # the release phase ends while nobody can record it
    parts.dynomgr.wait_for(rf"{app} heroku\[{re.escape(phase['name'])}\]: State changed from "
                           "up to down", after=agent_mark)
    assert parts.routing.get(app).text.startswith("one: ")

    parts.control = parts.start_control()
    release = poll(lambda: (r := api.get(f"/apps/{app}/releases/2"))["status"] != "pending"
                   and r, "v2 to settle once the control plane is back", timeout=60)
    assert release["status"] == "succeeded" and release["current"]
    assert "migrated" in release["phase_output"]
    poll(lambda: web_up(api.dynos(app), 1, release=2), "web.1 up on v2", timeout=60)
    assert not any(d["type"] == "release" for d in api.dynos(app))
