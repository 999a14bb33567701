"""A dyno's output and the platform's lines about it, shipped to the control plane's log
stream (docs/logs.md) by a real agent running real dynos."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import dynomesh_argv, dynomesh_env
from tests.dynomgr.test_agent_follows_control import follow, served_slug
from tests.feedserver import ScriptedControlPlane


@pytest.fixture
def control():
    server = ScriptedControlPlane(heartbeat=0.2).start()
    yield server
    server.close()


def as_shipped(stdout_line: str) -> tuple[str, str] | None:
    """A line the agent printed (`<time> <app> <source>[<dyno>]: <text>`) as the log stream
    has it: (app, `<time> <source>[<dyno>]: <text>`), the address routers need left out."""
    match = re.match(r"(\S+) (\S+) ((?:app|heroku)\[[^\]]+\]: .*)$", stdout_line)
    if match is None:
        return None
    at, app, rest = match.groups()
    rest = re.sub(r"^(heroku\[[^\]]+\]: State changed from \w+ to \w+) \(\S+\)$", r"\1", rest)
    return app, f"{at} {rest}"


def test_dyno_output_and_state_changes_reach_the_log_stream_in_order(harness, control):
    slug = served_slug(harness, control, "web: python web.py\nworker: python crash.py\n", "s-1")
    control.assign(harness.dyno("web.1", slug, id="d-1"), harness.dyno("worker.1", slug, id="d-2"))
    agent = follow(harness, control)
    agent.wait_up("web.1")
    agent.wait_for(r"hello app\[worker\.1\]: boom: cannot connect to the database")
    agent.wait_for(r"hello heroku\[worker\.1\]: State changed from up to crashed")
    printed = [shipped for line in list(agent.out) if (shipped := as_shipped(line))]
    # Everything the agent printed about its dynos reaches the control plane, in the same
    # order (the output of each dyno, and its state changes, as they happened).
    control.wait_for(lambda: len(control.log_lines) >= len(printed), what="the lines shipped")
    with control._changed:
        shipped = list(control.log_lines)
    assert shipped[:len(printed)] == printed
    web = [line for app, line in shipped if "[web.1]" in line]
    texts = [line.split(" ", 1)[1] for line in web]
    assert texts[0] == "heroku[web.1]: State changed from down to starting"
    assert re.fullmatch(r"heroku\[web\.1\]: Starting process with command `\S*python3? web\.py`",
                        texts[1])
    up = texts.index("heroku[web.1]: State changed from starting to up")
    assert any(re.fullmatch(r"app\[web\.1\]: listening on \d+ pid=\d+", text) for text in texts)
    assert up > 1
    times = [line.split(" ", 1)[0] for _, line in shipped]
    assert all(app == "hello" for app, _ in shipped) and times == sorted(times)
    # Counted once the control plane's answer is back, which may be after it has the lines.
    agent.wait_until(lambda: agent.metric("dynomgr_log_ship_lines_shipped_total") >= len(printed),
                     what="the shipped lines counted")


def test_no_log_ship_goes_with_control():
    result = subprocess.run(dynomesh_argv("dynomgr", "--assignments", "a.json", "--no-log-ship"),
                            env=dynomesh_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--no-log-ship goes with --control" in result.stderr
