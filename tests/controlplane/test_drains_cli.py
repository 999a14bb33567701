"""`dynomesh drains`, `drains:add` and `drains:remove` against a real control plane process,
with a real syslog receiver."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.controlplane.harness import ControlPlane
from tests.controlplane.logtail import line
from tests.controlplane.test_logs_cli import post
from tests.drainreceivers import SyslogReceiver


@pytest.fixture
def control(tmp_path):
    plane = ControlPlane(tmp_path / "home").start()
    yield plane
    assert plane.stop() == 0, plane.log()


def ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


async def cli(control: ControlPlane, *args: str):
    """The real command, off the event loop (the receiver runs on it meanwhile)."""
    return await asyncio.to_thread(control.cli, *args)


async def test_add_list_and_remove_drains_from_the_command_line(control):
    receiver = await SyslogReceiver().start()
    try:
        ok(await cli(control, "apps:create", "hello", "--no-link"))
        router = ok(await cli(control, "tokens:create", "--role", "router")).strip()
        empty = ok(await cli(control, "drains", "--app", "hello"))
        assert "hello has no log drains: `dynomesh drains:add URL --app hello` adds one" in empty
        added = ok(await cli(control, "drains:add", receiver.url, "--app", "hello"))
        assert added.startswith(f"Successfully added drain {receiver.url} to hello (d.")
        secret = "https://ops:hunter2@logs.example.com/in?key=K3ySecret"
        ok(await cli(control, "drains:add", secret, "--app", "hello"))
        await asyncio.to_thread(post, control, router,
                                [line(n, "heroku", "router", f"request {n}") for n in range(3)])
        await receiver.wait_for(3)
        assert receiver.texts() == ["request 0", "request 1", "request 2"]

        listed = json.loads(ok(await cli(control, "drains", "--app", "hello", "--json")))
        by_url = {d["url"]: d for d in listed}
        masked = "https://ops:****@logs.example.com/in?key=****"
        assert set(by_url) == {receiver.url, masked}
        table = ok(await cli(control, "drains", "--app", "hello"))
        assert table.splitlines()[0].split() == ["DRAIN", "URL", "SENT", "DROPPED", "RETRIES",
                                                 "LAST", "ERROR"]
        assert masked in table and "hunter2" not in table and "K3ySecret" not in table
        assert by_url[receiver.url]["token"] in table

        bad = await cli(control, "drains:add", "udp://logs.example.com:514", "--app", "hello")
        assert bad.returncode != 0
        assert "udp:// drains are not supported: use syslog+tls://HOST:PORT" in bad.stderr
        removed = ok(await cli(control, "drains:remove", secret, "--app", "hello"))
        assert removed.strip() == (f"Successfully removed drain {masked} "
                                   f"({by_url[masked]['token']}) from hello")
        token = by_url[receiver.url]["token"]
        ok(await cli(control, "drains:remove", token, "--app", "hello"))
        missing = await cli(control, "drains:remove", token, "--app", "hello")
        assert missing.returncode != 0 and "`dynomesh drains --app hello` lists them" \
            in missing.stderr
        help_text = ok(await cli(control, "help", "drains:add"))
        assert "syslog+tls://HOST:PORT" in help_text and "example:" in help_text
    finally:
        await receiver.stop()
