"""Session affinity through the router on real sockets: an in-process router, scripted dynos that
say who they are, a table with signing keys as a routes file gives it (docs/routes-format.md)."""

from __future__ import annotations

import asyncio

import pytest

from router.affinity import SigningKey, cookie_value
from router.config import parse_networks
from tests.router.conftest import app_entry, table_of
from tests.router.wire import Dyno, build_request, read_head, response_bytes

pytestmark = pytest.mark.functional

SIGNING = SigningKey("k1", b"s" * 32)


async def named_handler(dyno: Dyno, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    """Answers with its own name, and a cookie of the app's own."""
    while True:
        await dyno.next_request(reader)
        writer.write(response_bytes(200, dyno.name.encode(),
                                    headers=[("Set-Cookie", "app-session=s1; Path=/")]))
        await writer.drain()


def pin(headers) -> bytes | None:
    """The affinity cookie's value from a response's Set-Cookie fields, if any."""
    for value in headers:
        if value.startswith(b"dynomesh-session-affinity="):
            return value.split(b";")[0].partition(b"=")[2]
    return None


@pytest.fixture
async def dynos(dyno_factory):
    return [await dyno_factory(f"web.{i}", named_handler) for i in (1, 2, 3)]


async def get(router, cookie: bytes | None = None, host: str = "app.localhost",
              headers: list[tuple[str, str]] = ()):
    client = await router.client()
    try:
        extra = list(headers) + ([("Cookie", f"theme=dark; dynomesh-session-affinity="
                                             f"{cookie.decode()}")] if cookie else [])
        return await client.request(host=host, headers=extra)
    finally:
        await client.close()


async def test_a_client_is_pinned_to_the_dyno_of_its_first_response(router_factory, dynos):
    table = table_of(app_entry("app", dynos=dynos, session_affinity=True),
                     app_entry("plain", dynos=dynos))
    table.affinity_keys = (SIGNING,)
    router = await router_factory(table)
    first = await get(router)
    cookies = first.all("Set-Cookie")
    assert b"app-session=s1; Path=/" in cookies  # the app's own cookie is kept
    value = pin(cookies)
    dyno = first.body.decode()
    assert value.split(b".")[0] == b"k1" and value.endswith(b"." + dyno.encode())
    affinity = [c for c in cookies if c.startswith(b"dynomesh-session-affinity=")][0]
    assert affinity.endswith(b"; Path=/; HttpOnly; SameSite=Lax")  # plain http: not Secure
    for _ in range(8):  # P2C alone would spread these over three dynos
        again = await get(router, value)
        assert again.body.decode() == dyno
        assert pin(again.all("Set-Cookie")) is None  # pinned already: nothing to set
        assert again.all("Set-Cookie") == [b"app-session=s1; Path=/"]
    # The dyno sees the request's cookies as the client sent them.
    sent = [d for d in dynos if d.name == dyno][0].requests[-1].get("Cookie")
    assert sent == b"theme=dark; dynomesh-session-affinity=" + value

    # A forged cookie, one moved from another app, a made-up dyno: balanced, and a new pin.
    for bad in (b"k1." + b"A" * 43 + b".web.1",
                cookie_value(SIGNING, "plain", "web.1", dynos[0].address),
                cookie_value(SigningKey("k1", b"x" * 32), "app", "web.1", dynos[0].address)):
        answer = await get(router, bad)
        assert pin(answer.all("Set-Cookie")).endswith(b"." + answer.body)
        assert pin(answer.all("Set-Cookie")) != bad

    # An app without the feature: no affinity cookie, ever, even with one sent.
    for cookie in (None, value):
        plain = await get(router, cookie, host="plain.localhost")
        assert plain.all("Set-Cookie") == [b"app-session=s1; Path=/"]


async def test_the_cookie_is_secure_when_the_client_came_over_https(router_factory, dynos):
    table = table_of(app_entry("app", dynos=dynos[:1], session_affinity=True))
    table.affinity_keys = (SIGNING,)
    # A trusted load balancer terminating TLS says so with X-Forwarded-Proto (headers.py).
    router = await router_factory(table, trusted_proxies=parse_networks("127.0.0.0/8", "x"))
    answer = await get(router, headers=[("X-Forwarded-Proto", "https")])
    assert [c for c in answer.all("Set-Cookie") if c.startswith(b"dynomesh-")][0].endswith(
        b"; SameSite=Lax; Secure")
    answer = await get(router, headers=[("X-Forwarded-Proto", "http")])
    assert not [c for c in answer.all("Set-Cookie")
                if c.startswith(b"dynomesh-")][0].endswith(b"Secure")


async def test_a_pinned_dyno_that_refuses_connections_is_passed_over_and_the_pin_moves(
        router_factory, dynos, dyno_factory):
    dead = await dyno_factory("web.9")
    address = dead.address
    await dead.stop()  # its port now refuses connections
    entry = app_entry("app", dynos=dynos[:1], session_affinity=True)
    entry["dynos"].append({"name": "web.9", "address": address})
    table = table_of(entry)
    table.affinity_keys = (SIGNING,)
    router = await router_factory(table)
    answer = await get(router, cookie_value(SIGNING, "app", "web.9", address))
    assert answer.status == 200 and answer.body == b"web.1"  # the retry reached web.1
    assert pin(answer.all("Set-Cookie")) == cookie_value(SIGNING, "app", "web.1",
                                                         dynos[0].address)


async def test_without_signing_keys_an_affinity_app_is_balanced_without_a_cookie(
        router_factory, dynos):
    router = await router_factory(table_of(app_entry("app", dynos=dynos,
                                                     session_affinity=True)))
    answer = await get(router)
    assert answer.status == 200 and answer.all("Set-Cookie") == [b"app-session=s1; Path=/"]


async def test_a_websocket_handshake_pins_the_client_too(router_factory, dyno_factory):
    async def switch(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        await writer.drain()
        writer.write(await reader.readexactly(4))  # then bytes, both ways

    web1 = await dyno_factory("web.1", switch)
    table = table_of(app_entry("app", dynos=[web1], session_affinity=True))
    table.affinity_keys = (SIGNING,)
    router = await router_factory(table)
    client = await router.client()
    try:
        await client.send(build_request("GET", "/chat", "app.localhost", [
            ("Connection", "Upgrade"), ("Upgrade", "websocket")]))
        start, fields, _ = await read_head(client.reader)
        assert start.startswith(b"HTTP/1.1 101")
        cookies = [v for n, v in fields if n.lower() == b"set-cookie"]
        assert pin(cookies) == cookie_value(SIGNING, "app", "web.1", web1.address)
        await client.send(b"ping")
        assert await client.reader.readexactly(4) == b"ping"  # the tunnel works as ever
    finally:
        await client.close()
