"""`dynomesh up` wires the log stream: the router and the dyno manager it starts ship their
lines, and `dynomesh logs` shows them with the control plane's own, all real processes."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

from tests.conftest import REPO_ROOT, dynomesh_argv, dynomesh_env
from tests.test_up import Up, cli, home, runs  # noqa: F401  (fixtures)

WAIT = 90.0  # boots a control plane, a router, a dyno manager and a dyno on two shared cores


def request(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", headers={"Host": "hello.localhost"}),
                timeout=30) as response:
            response.read()  # the whole answer: a client gone after the head is the router's H27
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_up_ships_router_dyno_and_platform_lines_to_dynomesh_logs(home, runs):
    up = Up(home)
    runs.append(up)
    up.wait_for(r"up +\| dynomesh is up:")
    up.wait_for(r"up +\| then: .*dynomesh logs --tail --app hello")
    source = home / "hello-src"
    shutil.copytree(REPO_ROOT / "examples" / "hello", source)
    assert cli(home, "apps:create", "hello", "--no-link").returncode == 0
    deployed = cli(home, "deploy", str(source), "--app", "hello")
    assert deployed.returncode == 0, deployed.stderr

    tail = subprocess.Popen(dynomesh_argv("logs", "--tail", "--json", "--app", "hello"),
                            env=dynomesh_env(DYNOMESH_HOME=str(home)), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[dict] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(raw)) for raw in tail.stdout],
                     daemon=True).start()
    try:
        deadline = time.monotonic() + WAIT
        while request(up.ports["http"], "/from-the-test") != 200:  # 404 until routed
            assert time.monotonic() < deadline, "the app never answered through the router"
        wanted = {
            "deploy": lambda m: m["process"] == "api" and m["text"].startswith("Deploy "),
            "release": lambda m: m["process"] == "api" and m["text"].startswith("Release v1 "),
            "up": lambda m: (m["source"], m["process"], m["text"]) == (
                "heroku", "web.1", "State changed from starting to up"),
            "output": lambda m: m["source"] == "app" and m["text"].startswith(
                "web.1 listening on port "),
            "router": lambda m: m["process"] == "router" and 'path="/from-the-test"' in m["text"]
                                and "status=200" in m["text"] and "dyno=web.1" in m["text"],
        }
        seen, got = set(), []
        while seen != set(wanted):
            try:
                message = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"never shown: {set(wanted) - seen}; shown: {got}") from None
            got.append(message["text"])
            seen |= {name for name, match in wanted.items() if match(message)}
        shown = cli(home, "logs", "--dyno", "web.1", "--app", "hello")
        assert shown.returncode == 0
        assert " heroku[web.1]: State changed from starting to up\n" in shown.stdout
    finally:
        tail.terminate()
        tail.wait(10)
    code = up.stop()
    assert code == 0, "\n".join(up.lines[-40:])
