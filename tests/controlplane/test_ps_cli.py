"""`dynomesh ps`, `ps:restart`, `ps:stop` and `vms`: the real command against `dynomesh control`.

The test registers a VM and reports dyno states over plain HTTP, as a dyno manager would.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.controlplane.followers import DynoManager, Follower
from tests.controlplane.harness import ControlPlane
from tests.controlplane.test_cli import HELLO, as_json, ok


@pytest.fixture
def control(tmp_path):
    plane = ControlPlane(tmp_path / "home", extra_args=("--take-out-grace", "0.05")).start()
    yield plane
    assert plane.stop() == 0, plane.log()


async def test_ps_shows_dynos_and_restart_and_stop_steer_them(control, tmp_path):
    hello = tmp_path / "hello"
    shutil.copytree(HELLO, hello, ignore=shutil.ignore_patterns(".dynomesh", "__pycache__"))
    ok(control.cli("apps:create", "walk", "--no-link"))
    ok(control.cli("deploy", str(hello), "--app", "walk"))
    vm_token = ok(control.cli("tokens:create", "--role", "dynomgr", "--vm-id", "vm-1")).strip()
    agent = DynoManager(control.url, "vm-1", vm_token)
    await agent.register(capacity_mb=1024)  # room for two standard-1x dynos
    feed = await Follower.open(control.url, "/feeds/assignments", vm_token)
    try:
        ok(control.cli("ps:scale", "web=2", "worker=1", "--app", "walk"))
        await feed.until(lambda f: len(f.entries) == 2)
        web1 = next(e for e in feed.entries.values() if e["name"] == "web.1")
        await agent.up(web1)

        text = ok(control.cli("ps", "--app", "walk"))
        header, rule, *rows = text.splitlines()[:5]
        assert header.split() == ["DYNO", "STATE", "SINCE", "RELEASE", "VM", "ADDRESS",
                                  "RESTARTS"]
        by_name = {row.split()[0]: row for row in rows}
        assert by_name["web.1"].split()[1] == "up" and "vm-1" in by_name["web.1"]
        assert "127.0.0.1:" in by_name["web.1"] and " v1 " in by_name["web.1"]
        unplaced = [name for name, row in by_name.items() if row.split()[1] == "unplaced"]
        assert len(unplaced) == 1
        assert f"{unplaced[0]}: no VM has room (512 MB); it starts when a VM joins" in text
        listed = as_json(control.cli("ps", "--app", "walk", "--json"))
        assert sorted((d["name"], d["state"]) for d in listed)[0] == ("web.1", "up")

        restarted = control.cli("ps:restart", "web.1", "--app", "walk")
        assert "Restarting web.1 on walk... done" in ok(restarted)
        await feed.until(lambda f: f.entries[web1["id"]]["restart"] == 1)
        stopped = control.cli("ps:stop", "web.1", "--app", "walk")
        assert "Stopping web.1 on walk... done" in ok(stopped)
        await feed.until(lambda f: web1["id"] not in f.entries
                         and any(e["name"] == "web.1" for e in f.entries.values()))

        missing = control.cli("ps:stop", "web.9", "--app", "walk")
        assert missing.returncode == 3 and "no dyno 'web.9' on walk" in missing.stderr

        vms = ok(control.cli("vms"))
        assert vms.startswith("Scheduler: control node node-")
        assert vms.splitlines()[1].split()[:5] == ["VM", "STATE", "ADDRESS", "MEMORY", "DYNOS"]
        assert vms.splitlines()[3].split()[:6] == ["vm-1", "ready", "127.0.0.1", "1024/1024",
                                                   "MB", "2"]
        assert json.loads(ok(control.cli("vms", "--json")))[0]["capacity_mb"] == 1024
    finally:
        await feed.close()
        await agent.close()
    assert control.stop() == 0, control.log()
    for line in ("Scale to web=2, worker=1 by", "Restart web.1 by", "Stop web.1 by",
                 "Release v1 created by"):
        assert any(f" walk heroku[api]: {line}" in out for out in control.output), \
            control.output


def test_ps_on_an_app_without_dynos_says_what_to_do(control):
    ok(control.cli("apps:create", "empty", "--no-link"))
    assert "empty has no dynos" in ok(control.cli("ps", "--app", "empty"))
    assert "No VMs yet" in ok(control.cli("vms"))


def test_ps_state_text_tells_what_is_about_to_happen():
    from controlplane.cli.commands.ps import ago, state_text

    base = {"state": "up", "error_code": None, "reason": None, "taking_out": None,
            "serving": True}
    assert state_text(base) == "up"
    assert state_text({**base, "taking_out": "stop"}) == "up, stopping"
    assert state_text({**base, "taking_out": "restart"}) == "up, restarting"
    assert state_text({**base, "state": "starting", "serving": False}) == "starting, preboot"
    assert state_text({**base, "state": "crashed", "error_code": "R10",
                       "reason": "Boot timeout"}) == "crashed (R10: Boot timeout)"
    from datetime import datetime, timezone
    now = datetime(2026, 11, 26, 12, 5, 0, tzinfo=timezone.utc)
    assert ago("2026-11-26T12:00:00Z", now) == "2026-11-26 12:00:00 (5m ago)"
    assert ago("2026-11-26T12:04:58Z", now) == "2026-11-26 12:04:58 (2s ago)"


