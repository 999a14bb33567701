"""Child: real processes, readiness on the ready pipe, output lines, stopping."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest
import uvloop

from dynomesh.child import Child, describe_exit
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
ready.announce(port=1234, name="test")
print("ready for people", flush=True)
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
