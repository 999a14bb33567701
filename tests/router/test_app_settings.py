"""Per-app router settings from the route entry: the largest request body (413, H25) and the
request timeout (H12), each the app's own or, unset, the router's flag."""

import asyncio

import pytest

from tests.router.conftest import app_entry, table_of
from tests.router.wire import read_response, response_bytes

LIMIT = 1000


async def routed(router_factory, dyno, **router_settings):
    """A router with app `small` (limit 1000 B) and app `open` (no limit of its own)."""
    return await router_factory(table_of(
        app_entry("small", dynos=[dyno], max_body_bytes=LIMIT),
        app_entry("open", dynos=[dyno])), **router_settings)


async def test_a_declared_length_over_the_apps_limit_is_413_without_asking_a_dyno(
        router_factory, dyno_factory):
    dyno = await dyno_factory()
    router = await routed(router_factory, dyno)
    client = await router.client()
    # Expect: 100-continue: the client waits, and is told 413 instead of to go on.
    await client.send(b"POST /upload HTTP/1.1\r\nHost: small.localhost\r\n"
                      b"Content-Length: 1001\r\nExpect: 100-continue\r\n\r\n")
    response = await client.response()
    assert response.status == 413 and b"Request body too large" in response.body
    assert await client.closed()
    fields = router.log_fields()
    assert (fields["code"], fields["status"], fields["desc"]) == (
        "H25", "413", "Request body too large")
    assert dyno.connections == 0  # no dyno was asked
    # At the limit it goes through, to the dyno.
    client = await router.client()
    response = await client.request("POST", host="small.localhost", body=b"x" * LIMIT)
    assert response.status == 200 and response.body.endswith(b"x" * LIMIT)


async def test_the_routers_flag_is_the_default_and_an_apps_own_limit_wins(
        router_factory, dyno_factory):
    dyno = await dyno_factory()
    router = await routed(router_factory, dyno, max_body_bytes=10)
    client = await router.client()
    response = await client.request("POST", host="open.localhost", body=b"x" * 11)
    assert response.status == 413
    client = await router.client()
    response = await client.request("POST", host="small.localhost", body=b"x" * 11)
    assert response.status == 200


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_a_chunked_body_that_grows_over_the_limit_is_cut_with_413(
        router_factory, dyno_factory):
    seen = asyncio.get_running_loop().create_future()
    first_chunk = asyncio.Event()

    async def reader_of_bodies(dyno, reader, writer):
        received = b""
        while piece := await reader.read(65536):  # until the router closes the connection
            received += piece
            if received.count(b"#") >= 600:  # (the router may frame it as several chunks)
                first_chunk.set()
        seen.set_result(received)

    dyno = await dyno_factory(handler=reader_of_bodies)
    router = await routed(router_factory, dyno)
    client = await router.client()
    await client.send(b"POST / HTTP/1.1\r\nHost: small.localhost\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + chunk(b"#" * 600))
    await asyncio.wait_for(first_chunk.wait(), 5)  # within the limit: on its way to the dyno
    await client.send(chunk(b"z" * 600))  # 1200 bytes: over
    response = await client.response()
    assert response.status == 413 and router.log_fields()["code"] == "H25"
    received = await asyncio.wait_for(seen, 5)
    assert received.count(b"#") == 600 and b"z" not in received  # the excess never left


async def test_a_chunked_body_over_the_limit_after_the_response_began_closes_the_connection(
        router_factory, dyno_factory):
    async def answers_early(dyno, reader, writer):
        await reader.readuntil(b"\r\n\r\n")  # the head only: answer before the body
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"early"))
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=answers_early)
    router = await routed(router_factory, dyno)
    client = await router.client()
    await client.send(b"POST / HTTP/1.1\r\nHost: small.localhost\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
    head = await client.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    await client.send(chunk(b"c" * 1001))
    rest = await asyncio.wait_for(client.reader.read(), 5)  # ends: the connection is closed
    assert not rest.endswith(b"0\r\n\r\n")  # the response was cut, not ended
    assert router.log_fields()["code"] == "H25"


@pytest.mark.parametrize("app_timeout, expected", [(0.2, 503), (None, 200)])
async def test_an_apps_request_timeout_replaces_the_routers(
        router_factory, dyno_factory, app_timeout, expected):
    release = asyncio.Event()

    async def slow(dyno, reader, writer):
        await dyno.next_request(reader)
        await release.wait()
        writer.write(response_bytes(body=b"late"))
        await writer.drain()

    dyno = await dyno_factory(handler=slow)
    extra = {} if app_timeout is None else {"request_timeout": app_timeout}
    router = await router_factory(table_of(app_entry("app", dynos=[dyno], **extra)),
                                  request_timeout=60)
    client = await router.client()
    await client.send(b"GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
    if app_timeout is None:
        await dyno.wait_requests(1)
        release.set()  # the router's 60 s: the dyno answers well within it
    response = await asyncio.wait_for(read_response(client.reader), 10)
    assert response.status == expected
    if app_timeout is not None:
        assert router.log_fields()["code"] == "H12"
        release.set()
