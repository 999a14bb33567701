"""`dynomesh logs` against a real control plane process: lines, filters, JSON, and a tail that
lives through a restart of the control plane."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import urllib.request

import pytest

from tests.conftest import dynomesh_argv, free_port
from tests.controlplane.harness import ControlPlane
from tests.controlplane.logtail import body, line

WAIT = 30.0  # generous: two shared cores under a parallel test load


def post(control: ControlPlane, token: str, lines: list[str]) -> dict:
    request = urllib.request.Request(control.url + "/logs", data=body("hello", lines),
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def control(tmp_path):
    port = free_port()  # the same port after a restart: the tail reconnects to it
    plane = ControlPlane(tmp_path / "home", extra_args=("--listen", f"127.0.0.1:{port}")).start()
    yield plane
    plane.stop()


@pytest.fixture
def tokens(control):
    assert control.cli("apps:create", "hello", "--no-link").returncode == 0
    made = {}
    for role, extra in (("router", ()), ("dynomgr", ("--vm-id", "vm-1"))):
        result = control.cli("tokens:create", "--role", role, *extra)
        assert result.returncode == 0, result.stderr
        made[role] = result.stdout.strip()
    return made


class Lines:
    """A process's output lines, read on a thread; `next()` waits for one (bounded)."""

    def __init__(self, stream) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for raw in stream:
            self._queue.put(raw.rstrip("\n"))
        self._queue.put(None)

    def next(self) -> str:
        text = self._queue.get(timeout=WAIT)
        assert text is not None, "the output ended"
        return text

    def until(self, fragment: str) -> list[str]:
        seen = []
        while fragment not in (text := self.next()):
            seen.append(text)
        return [*seen, text]


def test_logs_shows_heroku_lines_and_filters_them(control, tokens):
    post(control, tokens["dynomgr"], [line(1, "heroku", "web.1", "State changed from starting to up"),
                                      line(2, "app", "web.1", "listening on 5000"),
                                      line(4, "app", "worker.1", "working")])
    post(control, tokens["router"], [line(3, "heroku", "router", 'at=info method=GET path="/"')])
    shown = control.cli("logs", "--app", "hello")
    assert shown.returncode == 0, shown.stderr
    assert [text for text in shown.stdout.splitlines() if "[api]" not in text] == [
        "2026-11-18T11:06:41.000000+00:00 heroku[web.1]: State changed from starting to up",
        "2026-11-18T11:06:42.000000+00:00 app[web.1]: listening on 5000",
        '2026-11-18T11:06:43.000000+00:00 heroku[router]: at=info method=GET path="/"',
        "2026-11-18T11:06:44.000000+00:00 app[worker.1]: working"]
    assert control.cli("logs", "-n", "1", "--app", "hello").stdout.endswith(": working\n")
    web = control.cli("logs", "--dyno", "web.1", "--source", "app", "--app", "hello")
    assert web.stdout == "2026-11-18T11:06:42.000000+00:00 app[web.1]: listening on 5000\n"
    router = control.cli("logs", "-d", "router", "--json", "--app", "hello")
    (entry,) = [json.loads(text) for text in router.stdout.splitlines()]
    assert entry == {"seq": 4, "at": "2026-11-18T11:06:43.000000+00:00", "source": "heroku",
                     "process": "router", "text": 'at=info method=GET path="/"'}
    wrong = control.cli("logs", "-n", "5000", "--app", "hello")
    assert wrong.returncode == 2 and "between 1 and 1500" in wrong.stderr
    missing = control.cli("logs", "--app", "nope")
    assert missing.returncode == 3 and "nope" in missing.stderr


def test_logs_tail_follows_new_lines_across_a_restart_of_the_control_plane(control, tokens):
    post(control, tokens["dynomgr"], [line(1, "app", "web.1", "before the tail")])
    tail = subprocess.Popen(dynomesh_argv("logs", "--tail", "--source", "app", "--app", "hello"),
                            env=control.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = Lines(tail.stdout), Lines(tail.stderr)
        assert out.next().endswith(" app[web.1]: before the tail")
        post(control, tokens["dynomgr"], [line(2, "app", "web.1", "while tailing")])
        assert out.next().endswith(" app[web.1]: while tailing")

        control.stop()  # SIGTERM: the control plane ends every tail on its way out
        assert "Lost the log stream" in err.next()
        control.start()
        post(control, tokens["dynomgr"], [line(3, "app", "web.1", "after the restart")])
        assert out.next().endswith(" app[web.1]: after the restart")  # nothing shown twice
        assert any("Reconnected to" in text for text in err.until("Reconnected to"))
    finally:
        tail.terminate()
        tail.wait(10)
