"""`dynomesh router --control URL --token-file F`: the real command following a (scripted)
control plane, and its flag errors."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess

import aiohttp
import pytest

from tests.conftest import dynomesh_argv, dynomesh_env
from tests.feedserver import ROUTER_TOKEN, ScriptedControlPlane
from tests.router.conftest import app_entry
from tests.router.wire import RawClient


@pytest.fixture
def control():
    server = ScriptedControlPlane().start()
    yield server
    server.close()


async def next_line(stream, pattern: str) -> re.Match:
    async with asyncio.timeout(30):
        while True:
            line = (await stream.readline()).decode()
            assert line, f"the router exited before printing {pattern!r}"
            match = re.search(pattern, line)
            if match:
                return match


async def test_the_router_command_follows_the_feed_and_stops_on_sigterm(control, dyno_factory,
                                                                        tmp_path):
    dyno = await dyno_factory("web.1")
    control.set_route(app_entry("hello", dynos=[dyno]))
    token_file = tmp_path / "router.token"
    token_file.write_text(ROUTER_TOKEN + "\n")
    process = await asyncio.create_subprocess_exec(
        *dynomesh_argv("router", "--listen", "127.0.0.1:0", "--admin", "off",
                       "--control", control.url, "--token-file", str(token_file)),
        env=dynomesh_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ready = await next_line(process.stderr, r"ready on http://127\.0\.0\.1:(\d+) following "
                                                r"the route feed of (\S+) ")
        assert ready.group(2) == control.url
        await next_line(process.stderr, rf"route feed: snapshot at revision {control.revision} "
                                        r"\(1 apps\)")
        client = await RawClient.connect(int(ready.group(1)))
        response = await client.request(host="hello.localhost")
        assert response.status == 200 and response.body == b"web.1 / "
        await client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()
    assert process.returncode == 0


@pytest.mark.parametrize("args, words", [
    ([], "either --control URL"),
    (["--routes", "r.json", "--control", "http://127.0.0.1:1"], "either --control URL"),
    (["--control", "http://127.0.0.1:1"], "--control needs --token-file"),
    (["--control", "127.0.0.1:5050", "--token-file", "t"], "not an http:// or https:// URL"),
    (["--control", "http://127.0.0.1:5050", "--token-file", "/nonexistent/t"], "does not exist"),
])
def test_the_source_flags_are_checked(args, words):
    result = subprocess.run(dynomesh_argv("router", "--listen", "127.0.0.1:0", "--admin", "off",
                                          *args), env=dynomesh_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and words in result.stderr


async def lines_matching(stream, patterns: list[str]) -> dict[str, re.Match]:
    """Read lines until each pattern has matched one, in any order; return the matches."""
    found: dict[str, re.Match] = {}
    async with asyncio.timeout(30):
        while len(found) < len(patterns):
            line = (await stream.readline()).decode()
            assert line, f"the router exited while waiting for {set(patterns) - set(found)!r}"
            for pattern in patterns:
                match = re.search(pattern, line)
                if match and pattern not in found:
                    found[pattern] = match
    return found


async def test_workers_each_follow_the_feed_and_survive_sighup(control, dyno_factory, tmp_path):
    dyno = await dyno_factory("web.1")
    control.set_route(app_entry("hello", dynos=[dyno]))
    token_file = tmp_path / "router.token"
    token_file.write_text(ROUTER_TOKEN + "\n")
    process = await asyncio.create_subprocess_exec(
        *dynomesh_argv("router", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                       "--workers", "2", "--control", control.url, "--token-file",
                       str(token_file)),
        env=dynomesh_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ready = (r"router: ready on http://127\.0\.0\.1:(\d+) following the route feed .*"
                 r"2 workers; admin on http://127\.0\.0\.1:(\d+)")
        found = await lines_matching(
            process.stderr, [ready] + [rf"worker {i}\]: route feed: snapshot" for i in (1, 2)])
        port, admin_port = int(found[ready].group(1)), int(found[ready].group(2))
        # SIGHUP goes on to the workers; following a feed, they say so and keep serving.
        process.send_signal(signal.SIGHUP)
        await lines_matching(process.stderr, [rf"worker {i}\]: SIGHUP ignored" for i in (1, 2)])
        for _ in range(8):  # new connections land on both workers; each has the table
            client = await RawClient.connect(port)
            response = await client.request(host="hello.localhost")
            assert response.status == 200 and response.body == b"web.1 / "
            await client.close()
        # The node's /metrics shows the feed as its workers follow it, together.
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{admin_port}/metrics") as answer:
                lines = (await answer.text()).splitlines()
        assert "dynomesh_router_feed_following 1.0" in lines
        assert f"dynomesh_router_feed_revision {float(control.revision)}" in lines
        assert "dynomesh_router_workers_reporting 2.0" in lines
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()
    assert process.returncode == 0
