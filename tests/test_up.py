"""`dynomesh up`: the control plane, a router and a dyno manager as supervised processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from onebox.config import Endpoint, UpConfig
from tests.conftest import dynomesh_argv, dynomesh_env
from tests.e2e.harness import (Api, Cli, RouterClient, Up, alive, copy_example, poll,
                               dyno_processes, web_up)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return Cli(home).run(*args, timeout=60)


@pytest.fixture
def home():
    """A home dyno users can pass through (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="dynomesh-up-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def runs():
    started: list[Up] = []
    yield started
    for run in started:
        run.kill()


def test_up_starts_the_platform_prints_its_urls_and_stops_everything_on_sigterm(home, runs):
    up = Up(home)
    runs.append(up)
    up.wait_for(r"up +\| dynomesh is up:")
    up.wait_for(rf"up +\|   API +{re.escape(up.api)}$")
    up.wait_for(rf"up +\|   apps +http://<app>\.localhost:{up.ports['http']}/$")
    up.wait_for(rf"up +\|   router admin +{re.escape(up.router_admin)}/readyz")
    up.wait_for(rf"up +\|   dynomgr admin +{re.escape(up.dynomgr_admin)}/healthz")
    up.wait_for(r"up +\| created router and dynomgr tokens in ")
    up.wait_for(r"control \| dynomesh control: listening on ")  # children's lines, prefixed
    assert set(up.pids()) == {"control", "router", "dynomgr"}

    created = cli(home, "apps:create", "hello", "--no-link")
    assert created.returncode == 0, created.stderr
    assert f"http://hello.localhost:{up.ports['http']}/" in created.stdout
    assert get(f"{up.router_admin}/healthz")[0] == 200
    assert get(f"{up.dynomgr_admin}/healthz")[0] == 200
    for name in ("credentials.json", "router.token", "dynomgr.token"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600

    # The platform runs an app: deploy, scale, an answer through the router.
    app_dir = copy_example("hello", home / "src")
    for args in (("deploy", str(app_dir), "--app", "hello"),
                 ("ps:scale", "web=2", "worker=1", "--app", "hello")):
        done = cli(home, *args)
        assert done.returncode == 0, done.stderr
    api = Api(home)
    poll(lambda: web_up(dynos := api.dynos("hello"), 2)
         and any(d["name"] == "worker.1" and d["state"] == "up" for d in dynos),
         "web.1, web.2 and worker.1 up")
    answer = RouterClient(up.http_port).get("hello")
    assert answer.status == 200 and answer.text.startswith("Hello from web.")
    dynos = dyno_processes(home / "dynos")
    assert len(dynos) >= 3  # each dyno's shell and its program

    pids = up.pids()
    assert up.stop(signal.SIGTERM) == 0
    lines = "\n".join(up.lines)
    order = [lines.index(f"up      | {name} stopped (status 0)") for name in ("router", "dynomgr", "control")]
    assert order == sorted(order), lines
    for dyno in ("web.1", "web.2", "worker.1"):
        assert f"hello heroku[{dyno}]: State changed from stopping to down" in lines
    assert not any(alive(pid) for pid in pids.values())
    assert not any(alive(pid) for pid in dynos)
    assert not dyno_processes(home / "dynos")  # no dyno left running
    assert not list((home / "dynos" / "run").glob("*.json"))


def test_up_again_keeps_its_state_and_tokens_and_restarts_a_killed_child(home, runs):
    first = Up(home)
    runs.append(first)
    first.wait_for(r"up +\| dynomesh is up:")
    for args in (("apps:create", "kept", "--no-link"),
                 ("deploy", str(copy_example("hello", home / "src")), "--app", "kept"),
                 ("ps:scale", "web=1", "--app", "kept")):
        done = cli(home, *args)
        assert done.returncode == 0, done.stderr
    poll(lambda: web_up(Api(home).dynos("kept"), 1), "web.1 up")
    tokens = {name: (home / name).read_text() for name in ("router.token", "dynomgr.token")}
    assert first.stop(signal.SIGINT) == 0, "\n".join(first.lines[-40:])

    second = Up(home)
    runs.append(second)
    second.wait_for(r"up +\| dynomesh is up:")
    assert not any("created" in line and "tokens" in line for line in second.lines)
    assert {name: (home / name).read_text() for name in tokens} == tokens
    listed = cli(home, "apps", "--json")
    assert [app["name"] for app in json.loads(listed.stdout)] == ["kept"]
    # The formation survived too: its dyno runs again and answers through the new router.
    router = RouterClient(second.http_port)
    poll(lambda: router.answers("kept", lambda r: r.text == "Hello from web.1\n"),
         "kept's web.1 answering again")

    mark = second.mark()
    old = second.pids()["router"]
    os.kill(old, signal.SIGKILL)
    second.wait_for(r"up +\| router exited with signal SIGKILL; starting it again now", after=mark)
    new = int(second.wait_for(r"up +\| started router again \(pid (\d+)\)", after=mark).group(1))
    assert new != old
    # The new router process takes the table from the feed again and routes on the same port.
    poll(lambda: router.answers("kept", lambda r: r.status == 200), "the restarted router")
    assert get(f"{second.router_admin}/healthz")[0] == 200
    assert second.stop(signal.SIGTERM) == 0, "\n".join(second.lines[-40:])


def test_a_part_that_cannot_start_stops_the_others_and_fails(home, runs):
    blocker = subprocess.Popen(dynomesh_argv("control", "--listen", "127.0.0.1:0", "--home",
                                             str(home / "other")),
                               env=dynomesh_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        port = int(re.search(rb"listening on http://127\.0\.0\.1:(\d+)", blocker.stdout.readline()).group(1))
        up = Up(home, "--api", f"127.0.0.1:{port}")  # a port another control plane holds
        runs.append(up)
        assert up.proc.wait(60) == 1
        up._reader.join(5)
        text = "\n".join(up.lines)
        assert "cannot start: control exited with status 1 before it was ready" in text
        assert "cannot listen on 127.0.0.1:" in text
        assert "pick another port with --api" in text  # up's own flag, not control's --listen
        assert not any(alive(pid) for pid in up.pids().values())
    finally:
        blocker.terminate()
        blocker.wait(30)


def test_up_refuses_a_port_given_twice(tmp_path):
    with pytest.raises(ValueError, match="need different ports"):
        UpConfig(home=tmp_path, api=Endpoint("127.0.0.1", 9000), http=Endpoint("127.0.0.1", 9000))


def test_up_killed_with_sigkill_leaves_no_part_and_no_dyno_running(home, runs):
    up = Up(home)
    runs.append(up)
    up.wait_for(r"up +\| dynomesh is up:")
    for args in (("apps:create", "orphan", "--no-link"),
                 ("deploy", str(copy_example("hello", home / "src")), "--app", "orphan")):
        done = cli(home, *args)
        assert done.returncode == 0, done.stderr
    poll(lambda: web_up(Api(home).dynos("orphan"), 1), "web.1 up")
    parts = up.pids()
    dynos = dyno_processes(home / "dynos")
    assert dynos

    up.proc.kill()  # no chance to stop anything itself: its children get SIGTERM from the kernel
    up.proc.wait(10)
    poll(lambda: not any(alive(pid) for pid in parts.values()), "the parts to exit", timeout=60)
    assert not any(alive(pid) for pid in dynos)
    assert not dyno_processes(home / "dynos")
