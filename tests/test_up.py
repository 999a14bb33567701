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
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from onebox.config import Endpoint, UpConfig
from onebox.restart import RestartBackoff
from tests.conftest import dynomesh_argv, dynomesh_env, free_port


class Up:
    """A running `dynomesh up` on free ports, its stdout collected line by line."""

    def __init__(self, home: Path, *extra: str) -> None:
        self.home = home
        self.ports = {name: free_port() for name in ("api", "http", "router", "dynomgr")}
        self.api = f"http://127.0.0.1:{self.ports['api']}"
        self.router_admin = f"http://127.0.0.1:{self.ports['router']}"
        self.dynomgr_admin = f"http://127.0.0.1:{self.ports['dynomgr']}"
        argv = dynomesh_argv(
            "up", "--home", str(home), "--api", f"127.0.0.1:{self.ports['api']}",
            "--http", f"127.0.0.1:{self.ports['http']}",
            "--router-admin", f"127.0.0.1:{self.ports['router']}",
            "--dynomgr-admin", f"127.0.0.1:{self.ports['dynomgr']}",
            "--data-dir", str(home / "dynos"), "--ready-timeout", "1", "--stop-timeout", "20",
            *extra)
        self.proc = subprocess.Popen(argv, env=dynomesh_env(NO_COLOR="1"),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = 60.0) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            index = after
            while True:
                for index in range(index, len(self.lines)):
                    match = regex.search(self.lines[index])
                    if match:
                        return match
                index = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines[-40:]))
                self._changed.wait(min(left, 0.5))

    def mark(self) -> int:
        with self._changed:
            return len(self.lines)

    def pids(self) -> dict[str, int]:
        """The latest pid of each child, from `up`'s own lines."""
        found = {}
        with self._changed:
            for line in self.lines:
                match = re.search(r"up +\| started (\w+) (?:again )?\(pid (\d+)\)", line)
                if match:
                    found[match.group(1)] = int(match.group(2))
        return found

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(dynomesh_argv(*args), env=dynomesh_env(DYNOMESH_HOME=str(home)),
                          capture_output=True, text=True, timeout=60)


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

    pids = up.pids()
    assert up.stop(signal.SIGTERM) == 0
    lines = "\n".join(up.lines)
    order = [lines.index(f"up      | {name} stopped (status 0)") for name in ("router", "dynomgr", "control")]
    assert order == sorted(order), lines
    assert not any(alive(pid) for pid in pids.values())
    assert not list((home / "dynos" / "run").glob("*.json"))  # no dyno left running


def test_up_again_keeps_its_state_and_tokens_and_restarts_a_killed_child(home, runs):
    first = Up(home)
    runs.append(first)
    first.wait_for(r"up +\| dynomesh is up:")
    assert cli(home, "apps:create", "kept", "--no-link").returncode == 0
    tokens = {name: (home / name).read_text() for name in ("router.token", "dynomgr.token")}
    assert first.stop(signal.SIGINT) == 0

    second = Up(home)
    runs.append(second)
    second.wait_for(r"up +\| dynomesh is up:")
    assert not any("created" in line and "tokens" in line for line in second.lines)
    assert {name: (home / name).read_text() for name in tokens} == tokens
    listed = cli(home, "apps", "--json")
    assert [app["name"] for app in json.loads(listed.stdout)] == ["kept"]

    mark = second.mark()
    old = second.pids()["router"]
    os.kill(old, signal.SIGKILL)
    second.wait_for(r"up +\| router exited with signal SIGKILL; starting it again now", after=mark)
    new = int(second.wait_for(r"up +\| started router again \(pid (\d+)\)", after=mark).group(1))
    assert new != old
    deadline = time.monotonic() + 30
    while True:  # the new router process answers on the same admin port
        try:
            if get(f"{second.router_admin}/healthz")[0] == 200:
                break
        except OSError:
            pass  # not listening yet
        assert time.monotonic() < deadline, "the restarted router never answered"
        time.sleep(0.05)
    assert second.stop(signal.SIGTERM) == 0


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
        assert not any(alive(pid) for pid in up.pids().values())
    finally:
        blocker.terminate()
        blocker.wait(30)


def test_restart_backoff_is_immediate_then_doubles_to_the_cap_and_forgives_a_long_run():
    now = [0.0]
    backoff = RestartBackoff(lambda: now[0], base=1.0, cap=8.0, healthy_after=30.0)
    delays = []
    for _ in range(6):
        backoff.started()
        now[0] += 1
        delays.append(backoff.exited())
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.started()
    now[0] += 31
    assert backoff.exited() == 0.0


def test_up_refuses_a_port_given_twice(tmp_path):
    with pytest.raises(ValueError, match="four different ports"):
        UpConfig(home=tmp_path, api=Endpoint("127.0.0.1", 9000), http=Endpoint("127.0.0.1", 9000))
