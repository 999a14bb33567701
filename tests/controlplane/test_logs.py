"""App logs through a real control node: lines in, kept, filtered, tailed (docs/logs.md)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from controlplane.store.logs import KEEP, PRUNE_STEP
from controlplane.store.models import Role
from tests.controlplane.logtail import Tail, body, fetch, line, post, texts


async def app_with_lines(api, name: str = "hello") -> None:
    status, _, _ = await api.call("POST", "/apps", json={"name": name})
    assert status == 201


# --- in and out ---

async def test_lines_from_routers_and_dyno_managers_read_back_in_time_order(node_factory):
    api = await node_factory()
    await app_with_lines(api)
    # The router's batch arrives after the dyno manager's although its lines are older.
    status, answer = await post(api.url, api.tokens[Role.DYNOMGR], "hello", [
        line(1.0, "heroku", "web.1", "State changed from starting to up"),
        line(3.0, "app", "web.1", "GET / 200")])
    assert status == 200 and answer["accepted"] == 2
    status, answer = await post(api.url, api.tokens[Role.ROUTER], "hello", [
        line(0.5, "heroku", "router", 'at=info method=GET path="/" status=503'),
        line(2.0, "heroku", "router", 'at=info method=GET path="/" status=200')])
    assert status == 200 and answer == {"accepted": 2, "ignored": 0, "unknown_apps": [],
                                        "rejected": 0, "errors": []}
    status, text = await fetch(api.url, api.tokens[Role.USER], "hello")
    assert status == 200
    assert text.splitlines() == [
        '2026-11-18T11:06:40.500000+00:00 heroku[router]: at=info method=GET path="/" status=503',
        "2026-11-18T11:06:41.000000+00:00 heroku[web.1]: State changed from starting to up",
        '2026-11-18T11:06:42.000000+00:00 heroku[router]: at=info method=GET path="/" status=200',
        "2026-11-18T11:06:43.000000+00:00 app[web.1]: GET / 200"]
    status, text = await fetch(api.url, api.tokens[Role.USER], "hello", ndjson=True, lines=1)
    assert status == 200 and text == (
        '{"type": "line", "seq": 2, "at": "2026-11-18T11:06:43.000000+00:00", "source": "app", '
        '"process": "web.1", "text": "GET / 200"}\n')


async def test_a_bad_line_is_refused_alone_and_lines_of_unknown_apps_are_ignored(api):
    await app_with_lines(api)
    raw = (body("hello", [line(0, "app", "web.1", "kept"), "not a log line",
                          line(1, "app", "web 1", "bad process")])
           + body("nope", [line(2, "app", "web.1", "no such app")])
           + b"@Not_An_App\n" + line(3, "app", "web.1", "named badly").encode() + b"\n"
           + body("hello", [line(4, "app", "web.1", "kept too \x00 with a NUL")]))
    status, answer = await post(api.url, api.tokens[Role.DYNOMGR], "", [], raw=raw)
    assert status == 200
    assert (answer["accepted"], answer["ignored"], answer["unknown_apps"], answer["rejected"]) \
        == (2, 1, ["nope"], 4)
    assert answer["errors"][0].startswith("line 3: does not start with an RFC 5424")
    assert "invalid process name" in answer["errors"][1]
    assert await texts(api.url, api.tokens[Role.USER], "hello") == [
        "kept", "kept too \ufffd with a NUL"]


async def test_each_role_sends_only_its_own_lines_and_only_users_read_them(api):
    await app_with_lines(api)
    router, dynomgr = api.tokens[Role.ROUTER], api.tokens[Role.DYNOMGR]
    _, answer = await post(api.url, router, "hello", [line(0, "app", "web.1", "forged")])
    assert answer["rejected"] == 1 and "heroku[router]" in answer["errors"][0]
    for process in ("router", "api"):
        _, answer = await post(api.url, dynomgr, "hello", [line(0, "heroku", process, "forged")])
        assert answer["rejected"] == 1, process
    _, answer = await post(api.url, router, "hello", [
        line(0, "heroku", "logs", "Error L10 (output buffer overflow): 3 messages dropped")])
    assert answer["accepted"] == 1
    status, answer = await post(api.url, api.tokens[Role.USER], "hello", [])
    assert status == 403
    assert (await fetch(api.url, router, "hello"))[0] == 403
    assert (await fetch(api.url, api.tokens[Role.USER], "nope"))[0] == 404
    status, _, _ = await api.call("POST", "/logs", role=Role.ROUTER, json={"lines": []})
    assert status == 415


async def test_lines_dyno_and_source_choose_what_is_shown(api):
    await app_with_lines(api)
    await post(api.url, api.tokens[Role.DYNOMGR], "hello", [
        line(0, "heroku", "web.1", "Starting process"), line(1, "app", "web.1", "one"),
        line(2, "app", "web.2", "two"), line(3, "app", "worker.1", "three"),
        line(4, "app", "web.1", "four"), line(5, "app", "webby.1", "five")])
    await post(api.url, api.tokens[Role.ROUTER], "hello", [
        line(6, "heroku", "router", "at=info status=200")])
    user = api.tokens[Role.USER]
    assert await texts(api.url, user, "hello", lines=2) == ["five", "at=info status=200"]
    assert await texts(api.url, user, "hello", dyno="web.1") == ["Starting process", "one",
                                                                 "four"]
    assert await texts(api.url, user, "hello", dyno="web") == ["Starting process", "one", "two",
                                                               "four"]
    assert await texts(api.url, user, "hello", dyno="web.1", source="app", lines=1) == ["four"]
    assert await texts(api.url, user, "hello", source="heroku") == ["Starting process",
                                                                    "at=info status=200"]
    assert await texts(api.url, user, "hello", dyno="router") == ["at=info status=200"]
    for query in ({"lines": 0}, {"lines": KEEP + 1}, {"lines": "x"}, {"source": "dyno"},
                  {"dyno": "web 1"}, {"tail": "maybe"}, {"after": "-1"}):
        status, text = await fetch(api.url, user, "hello", **query)
        assert status == 422, (query, text)


async def test_an_app_keeps_its_last_1500_lines_and_prunes_in_steps(node_factory):
    api = await node_factory()
    await app_with_lines(api)
    total = KEEP + 2 * PRUNE_STEP + 37
    for start in range(0, total, 500):
        batch = [line(n, "app", "web.1", f"line {n}") for n in range(start, min(total, start + 500))]
        status, answer = await post(api.url, api.tokens[Role.DYNOMGR], "hello", batch)
        assert status == 200 and answer["accepted"] == len(batch)
    shown = await texts(api.url, api.tokens[Role.USER], "hello", lines=KEEP)
    assert shown == [f"line {n}" for n in range(total - KEEP, total)]
    async with api.store.db.read() as tx:
        rows = await tx.fetchval("SELECT COUNT(*) FROM log_lines")
    assert KEEP <= rows < KEEP + PRUNE_STEP  # pruned in steps, never far beyond the window
    status, _, _ = await api.call("DELETE", "/apps/hello")
    assert status == 200
    async with api.store.db.read() as tx:
        assert await tx.fetchval("SELECT COUNT(*) FROM log_lines") == 0


async def test_lines_survive_a_restart_of_the_control_plane(node_factory):
    first = await node_factory()
    await app_with_lines(first)
    await post(first.url, first.tokens[Role.DYNOMGR], "hello",
               [line(n, "app", "web.1", f"before {n}") for n in range(3)])
    await first.client.close()
    await first.node.stop()
    await first.store.close()
    second = await node_factory()
    await post(second.url, second.tokens[Role.DYNOMGR], "hello",
               [line(10, "app", "web.1", "after")])
    status, text = await fetch(second.url, second.tokens[Role.USER], "hello", ndjson=True)
    assert status == 200
    assert [m.split('"text": ')[1] for m in text.splitlines()] == [
        '"before 0"}', '"before 1"}', '"before 2"}', '"after"}']
    assert '"seq": 4,' in text.splitlines()[-1]  # numbering goes on where it was


async def test_api_changes_are_heroku_api_lines_in_the_apps_log(api):
    await app_with_lines(api)
    await api.deploy("hello")
    await api.call("PATCH", "/apps/hello/config-vars", json={"GREETING": "hi"})
    await api.call("POST", "/apps/hello/releases", json={"release": 1})
    await api.call("PATCH", "/apps/hello/formation/web", json={"quantity": 3})
    assert await api.node.logs.flush(10)
    shown = await texts(api.url, api.tokens[Role.USER], "hello", dyno="api")
    who = "user token " + (await api.call("GET", "/account"))[1]["id"][:8]
    assert [text.replace(who, "USER") for text in shown] == [
        next(t for t in shown if t.startswith("Deploy ")).replace(who, "USER"),
        "Release v1 created by USER",
        "Set GREETING config vars by USER", "Release v2 created by USER",
        "Rollback to v1 by USER", "Release v3 created by USER",
        "Scale to web=3, worker=0 by USER"]


# --- tails ---

async def test_a_tail_shows_the_last_lines_then_new_ones_as_they_arrive(node_factory):
    api = await node_factory()
    await app_with_lines(api)
    dynomgr, user = api.tokens[Role.DYNOMGR], api.tokens[Role.USER]
    await post(api.url, dynomgr, "hello", [line(n, "app", "web.1", f"old {n}") for n in range(5)])
    tail = await Tail.open(api.url, user, "hello", lines=2)
    web2 = await Tail.open(api.url, user, "hello", lines=1, dyno="web.2")
    try:
        await tail.until(lambda t: t.texts() == ["old 3", "old 4"])
        await post(api.url, dynomgr, "hello", [line(9, "app", "web.1", "new 1"),
                                               line(9.5, "app", "web.2", "new 2")])
        await post(api.url, api.tokens[Role.ROUTER], "hello", [
            line(10, "heroku", "router", "at=info status=200")])
        await tail.until(lambda t: len(t.lines) == 5)
        assert tail.texts()[2:] == ["new 1", "new 2", "at=info status=200"]
        await web2.until(lambda t: t.texts() == ["new 2"])
        # Resuming after the last line seen gives what came since, and then new lines.
        seen = tail.lines[2]["seq"]
        resumed = await Tail.open(api.url, user, "hello", after=seen)
        try:
            await resumed.until(lambda t: t.texts() == ["new 2", "at=info status=200"])
        finally:
            await resumed.close()
    finally:
        await tail.close()
        await web2.close()


async def test_a_tail_on_one_node_gets_lines_another_node_stored(postgres_url, api_factory):
    a = await api_factory(database_url=postgres_url)
    b = await api_factory(database_url=postgres_url)
    await app_with_lines(a)
    tail = await Tail.open(b.url, b.tokens[Role.USER], "hello")
    try:
        await post(a.url, a.tokens[Role.DYNOMGR], "hello", [line(0, "app", "web.1", "via a")])
        await tail.until(lambda t: t.texts() == ["via a"])
        # Lines stored on both nodes interleave in each node's tails, none lost or doubled.
        for n in range(1, 7):
            node = (a, b)[n % 2]
            await post(node.url, node.tokens[Role.DYNOMGR], "hello",
                       [line(n, "app", "web.1", f"line {n}")])
        await tail.until(lambda t: len(t.lines) == 7)
        assert tail.texts() == ["via a"] + [f"line {n}" for n in range(1, 7)]
    finally:
        await tail.close()


async def test_a_slow_tail_is_cut_off_without_holding_up_the_others(api_factory):
    api = await api_factory(tail_buffer=100)
    await app_with_lines(api)
    user = api.tokens[Role.USER]
    fast = await Tail.open(api.url, user, "hello", lines=1)
    slow = await _unread_tail(api.url, user)
    try:
        padding = "x" * 1000
        total = 0
        hub = api.node.logs.hub
        while hub.cut_off == 0:
            assert total < 20_000, "the slow tail was never cut off"
            batch = [line(total + n, "app", "web.1", f"{total + n} {padding}")
                     for n in range(50)]
            await post(api.url, api.tokens[Role.DYNOMGR], "hello", batch)
            total += len(batch)
        await fast.until(lambda t: len(t.lines) == total)  # got every line meanwhile
        assert hub.tails == 1
        # The slow reader, once it reads, finds why it was cut off, then the end.
        rest = await asyncio.wait_for(_read_to_end(slow), 30)
        assert b"heroku[logs]: Error L11 (Tail buffer overflow): tail session cut off" in rest
    finally:
        await fast.close()
        slow[1].close()


async def _unread_tail(url: str, token: str):
    """A tail whose client reads nothing after the response head, on a small receive buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET /apps/hello/log?tail=true&lines=1 HTTP/1.1\r\nHost: {host}\r\n"
                 f"Authorization: Bearer {token}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer


async def _read_to_end(slow) -> bytes:
    reader, _ = slow
    data = b""
    while chunk := await reader.read(65536):
        data = (data + chunk)[-4096:]
    return data
