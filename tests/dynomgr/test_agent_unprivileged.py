"""An agent that is not root runs its dynos as its own user and marks them in their environment."""

from __future__ import annotations

import os
import shutil
import signal
import stat

import pytest

from tests.dynomgr.conftest import http_json, marked_processes, pid_alive

NOBODY = 65534

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root to start the agent as an unprivileged user (setpriv)",
)


def as_nobody() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def test_an_unprivileged_agent_runs_dynos_as_itself_and_still_stops_escaped_processes(harness):
    harness.data_dir.mkdir()
    os.chown(harness.data_dir, NOBODY, NOBODY)
    slug = harness.slugs.make("web: python web.py\nworker: python escape.py\n")
    harness.write(harness.dyno("web.1", slug), harness.dyno("worker.1", slug))
    agent = harness.start(prefix=as_nobody(), flags={"--stop-timeout": "1"})
    agent.wait_for(r"not using cgroups \(.*\); marking dynos in their environment", stream="err")
    agent.wait_for(r"dynos run as nobody, the agent's user", stream="err")
    answer = http_json(agent.wait_up("web.1"))
    assert answer["uid"] == NOBODY
    assert "DYNOMESH_MARKER" in answer["env"]
    info = os.stat(answer["home"])
    assert info.st_uid == NOBODY and stat.S_IMODE(info.st_mode) == 0o700

    grandchild = int(agent.wait_for(r"app\[worker\.1\]: grandchild pid=(\d+)").group(1))
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit() == 0
    assert not pid_alive(grandchild)
    assert marked_processes(harness.run_id) == {}


def test_an_unprivileged_agent_cannot_use_a_data_dir_it_cannot_write(harness):
    harness.write()
    harness.data_dir.mkdir(mode=0o755)  # owned by root
    agent = harness.start(prefix=as_nobody())
    assert agent.wait_exit() == 2
    assert any(f"data dir {harness.data_dir} is unusable" in line and "Permission denied" in line for line in agent.err), agent.err
