"""Child: real processes, readiness on the ready pipe, output lines, stopping."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest
import uvloop

from dynomesh.backoff import BackoffPolicy, RestartBackoff
from dynomesh.child import Child, describe_exit, keep_running, restart_pause, restart_when
from dynomesh.ready import NotReady
from tests.conftest import dynomesh_env

RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}

ANNOUNCING = """
import signal, sys, time
from dynomesh.ready import Readiness
ready = Readiness.from_environ()
print("out line", flush=True)
print("err line", file=sys.stderr, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
print("ready for people", flush=True)  # as the components do: the line, then the pipe
ready.announce(port=1234, name="test")
time.sleep(60)
"""


@pytest.fixture(params=sorted(RUNNERS))
def run(request):
    return RUNNERS[request.param]


def python(code: str, name: str = "kid", **kwargs) -> tuple[Child, list[str]]:
    lines: list[str] = []
    child = Child(name, [sys.executable, "-c", code], on_line=lines.append, env=dynomesh_env(),
                  **kwargs)
    return child, lines


def test_a_child_is_ready_with_the_facts_it_announced_and_stops_on_sigterm(run):
    async def scenario():
        child, lines = python(ANNOUNCING)
        pid = await child.start()
        async with asyncio.timeout(30):
            facts = await child.ready()
        assert child.running and child.pid == pid
        code, in_time = await child.stop(timeout=30)
        return facts, code, in_time, lines

    facts, code, in_time, lines = run(scenario())
    assert facts == {"port": 1234, "name": "test"}
    assert (code, in_time) == (3, True)
    assert sorted(lines) == ["err line", "out line", "ready for people"]


def test_a_child_that_exits_first_is_not_ready_and_its_status_is_kept(run):
    async def scenario():
        child, lines = python("import sys; print('cannot start', file=sys.stderr); sys.exit(4)")
        await child.start()
        async with asyncio.timeout(30):
            with pytest.raises(NotReady, match="exited before"):
                await child.ready()
            return await child.wait(), lines

    code, lines = run(scenario())
    assert code == 4 and lines == ["cannot start"]


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(run):
    code = """
import signal, time
from dynomesh.ready import Readiness
signal.signal(signal.SIGTERM, signal.SIG_IGN)
Readiness.from_environ().announce()
time.sleep(60)
"""

    async def scenario():
        child, _ = python(code)
        await child.start()
        await child.ready()
        return await child.stop(timeout=0.5)

    code, in_time = run(scenario())
    assert (code, in_time) == (-signal.SIGKILL, False)


def test_a_child_can_be_started_again_and_announces_again(run):
    async def scenario():
        child, _ = python(ANNOUNCING)
        seen = []
        for _ in range(2):
            await child.start()
            seen.append(await child.ready())
            await child.stop(timeout=30)
        return seen

    assert run(scenario()) == [{"port": 1234, "name": "test"}] * 2


def test_a_shared_stdout_is_not_captured(run, capfd):
    async def scenario():
        child, lines = python(ANNOUNCING, capture_stdout=False)
        await child.start()
        await child.ready()
        await child.stop(timeout=30)
        return lines

    assert run(scenario()) == ["err line"]


def test_exits_are_described_for_people():
    assert describe_exit(0) == "status 0"
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(None) == "no status (it did not start)"


async def test_a_restart_pause_ends_after_its_delay_or_early_when_stopping():
    stopping = asyncio.Event()
    assert await restart_pause(0, stopping) is True
    assert await restart_pause(0.01, stopping) is True
    stopping.set()
    assert await restart_pause(3600, stopping) is False
    assert restart_when(0) == "now" and restart_when(2.5) == "in 2.5 s"


def quick_restarts() -> RestartBackoff:
    return RestartBackoff(BackoffPolicy(0.01, 0.01, immediate_first=True).start(),
                          healthy_after=60, clock=time.monotonic)


async def test_keep_running_starts_a_child_again_after_it_died(tmp_path):
    marker = tmp_path / "ran-once"
    code = f"""
import pathlib, sys, time
from dynomesh.ready import Readiness
marker = pathlib.Path({str(marker)!r})
first = not marker.exists()
marker.touch()
Readiness.from_environ().announce(first=first)
if first:
    sys.exit(5)
time.sleep(60)
"""
    child, _ = python(code)
    stopping = asyncio.Event()
    said: list[str] = []
    announced: list[dict] = []
    exits: list[bool] = []

    def on_ready(facts):
        announced.append(facts)
        if not facts["first"]:
            stopping.set()
            child.signal(signal.SIGTERM)

    async with asyncio.timeout(30):
        await keep_running(child, quick_restarts(), stopping, said.append, on_ready=on_ready,
                           on_exit=lambda: exits.append(True))
    assert announced == [{"first": True}, {"first": False}]
    assert len(exits) == 2
    assert said[0] == "kid exited with status 5; starting it again now (restart 1 in a row)"
    assert said[1].startswith("started kid again (pid ")


async def test_keep_running_backs_off_while_a_child_cannot_be_started(tmp_path):
    child = Child("kid", [str(tmp_path / "missing")], on_line=print)
    stopping = asyncio.Event()
    said: list[str] = []

    def say(text: str) -> None:
        said.append(text)
        if sum("cannot start" in line for line in said) == 2:
            stopping.set()

    async with asyncio.timeout(30):
        await keep_running(child, quick_restarts(), stopping, say)
    assert said[0].startswith("cannot start kid: ")
    assert said[1] == "kid exited with no status (it did not start); starting it again now (restart 1 in a row)"
    assert said[2].startswith("cannot start kid again: ")
