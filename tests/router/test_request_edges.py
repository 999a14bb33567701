"""Edge cases of clients' requests: the exact request line, fragments, repeated
Content-Length, empty Expect, HTTP/1.0 keep-alive and Host, and an upgrade request with a body.
Each is sent in one write and one byte per write, with the dyno connection fresh and pooled (a
good request first, on the same client connection), where it applies."""

import asyncio

import pytest

from tests.router.conftest import app_entry, table_of
from tests.router.wire import build_request, read_head, read_response, send_bytes

HOST = b"Host: app1.localhost\r\n"
POOLED = pytest.mark.parametrize("pooled", [False, True], ids=["fresh", "pooled"])
BYTEWISE = pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])


async def setup(dyno_factory, router_factory, pooled, handler=None):
    dyno = await dyno_factory(handler=handler)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    if pooled:
        assert (await client.request(host="app1.localhost")).status == 200
    return dyno, router, client


# -- the request line --------------------------------------------------------------------------

BAD_LINES = [
    ("two spaces after the method", b"GET  / HTTP/1.1\r\n"),
    ("two spaces before the version", b"GET /  HTTP/1.1\r\n"),
    ("three spaces", b"GET   /x HTTP/1.1\r\n"),
    ("spaces on both sides", b"POST  /x  HTTP/1.1\r\n"),
    ("after an empty line", b"\r\nGET  / HTTP/1.1\r\n"),
    ("absolute form", b"GET  http://app1.localhost/ HTTP/1.1\r\n"),
    ("RTSP version", b"GET / RTSP/1.0\r\n"),
]


@POOLED
@BYTEWISE
@pytest.mark.parametrize("name, line", BAD_LINES, ids=[case[0] for case in BAD_LINES])
async def test_a_request_line_without_single_spaces_is_400(dyno_factory, router_factory, name,
                                                           line, bytewise, pooled):
    dyno, router, client = await setup(dyno_factory, router_factory, pooled)
    await send_bytes(client.writer, line + HOST + b"\r\n", bytewise)
    response = await read_response(client.reader)
    assert response.status == 400 and await client.closed()
    fields = router.log_fields()
    assert fields["code"] == "H26" and fields["status"] == "400"
    assert len(dyno.requests) == (1 if pooled else 0)  # never forwarded


GOOD_LINES = [
    b"GET / HTTP/1.1\r\n",
    b"\r\nGET /after-an-empty-line HTTP/1.1\r\n",
    b"\r\n\r\nGET /a?b=c%20d HTTP/1.1\r\n",
    b"OPTIONS * HTTP/1.1\r\n",
    b"DELETE /x HTTP/1.0\r\nConnection: keep-alive\r\n",
]


@POOLED
@BYTEWISE
@pytest.mark.parametrize("line", GOOD_LINES, ids=[line.decode().strip() for line in GOOD_LINES])
async def test_a_request_line_with_single_spaces_is_forwarded(dyno_factory, router_factory, line,
                                                              bytewise, pooled):
    dyno, router, client = await setup(dyno_factory, router_factory, pooled)
    await send_bytes(client.writer, line + HOST + b"\r\n", bytewise)
    response = await read_response(client.reader)
    assert response.status == 200
    method, target, _ = line.strip().split(b"\r\n")[0].split(b" ")
    assert dyno.requests[-1].start == b"%s %s HTTP/1.1" % (method, target)


@BYTEWISE
async def test_pipelined_requests_are_checked_each_one(dyno_factory, router_factory, bytewise):
    dyno, router, client = await setup(dyno_factory, router_factory, False)
    good = build_request("POST", "/1", "app1.localhost", body=b"GET  / HTTP/1.1\r\n")
    await send_bytes(client.writer, good + build_request("GET", "/2", "app1.localhost")
                     + b"GET  /3 HTTP/1.1\r\n" + HOST + b"\r\n", bytewise)
    first, second, third = [await read_response(client.reader) for _ in range(3)]
    assert (first.status, second.status, third.status) == (200, 200, 400)
    assert await client.closed()
    assert [r.target for r in dyno.requests] == [b"/1", b"/2"]


# -- fragments --------------------------------------------------------------------------------

@POOLED
@BYTEWISE
@pytest.mark.parametrize("target, forwarded", [
    (b"/?a=1#x", b"/?a=1"), (b"/path#", b"/path"), (b"/#a#b", b"/"),
    (b"http://app1.localhost/p?q#frag", b"/p?q"),
])
async def test_a_fragment_is_never_forwarded(dyno_factory, router_factory, target, forwarded,
                                             bytewise, pooled):
    dyno, router, client = await setup(dyno_factory, router_factory, pooled)
    await send_bytes(client.writer, b"GET %s HTTP/1.1\r\n" % target + HOST + b"\r\n", bytewise)
    response = await read_response(client.reader)
    assert response.status == 200
    assert dyno.requests[-1].target == forwarded
    assert router.log_fields()["path"] == forwarded.decode()


# -- Content-Length ---------------------------------------------------------------------------

@POOLED
@BYTEWISE
@pytest.mark.parametrize("lengths", [
    b"Content-Length: 5\r\nContent-Length: 5\r\n",
    b"Content-Length: 5\r\nX: 1\r\ncontent-length:5 \r\nContent-Length: 5\r\n",
], ids=["twice", "three times"])
async def test_repeated_identical_content_lengths_are_forwarded_as_one(
        dyno_factory, router_factory, lengths, bytewise, pooled):
    dyno, router, client = await setup(dyno_factory, router_factory, pooled)
    await send_bytes(client.writer, b"POST /up HTTP/1.1\r\n" + HOST + lengths + b"\r\nhello"
                     + build_request("GET", "/next", "app1.localhost"), bytewise)
    response = await read_response(client.reader)
    assert response.status == 200 and response.body == b"web.1 /up hello"
    assert (await read_response(client.reader)).body == b"web.1 /next "
    seen = dyno.requests[-2]
    assert seen.all("Content-Length") == [b"5"] and seen.body == b"hello"
    await client.close()


@POOLED
@BYTEWISE
@pytest.mark.parametrize("lengths", [
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 5\r\nContent-Length: 5, 5\r\n",
    b"Content-Length: 5, 5\r\n",
], ids=["different", "a list after one", "a list"])
async def test_different_or_listed_content_lengths_stay_400(dyno_factory, router_factory,
                                                            lengths, bytewise, pooled):
    dyno, router, client = await setup(dyno_factory, router_factory, pooled)
    await send_bytes(client.writer, b"POST /up HTTP/1.1\r\n" + HOST + lengths + b"\r\nhello!",
                     bytewise)
    response = await read_response(client.reader)
    assert response.status == 400 and await client.closed()
    assert len(dyno.requests) == (1 if pooled else 0)


# -- Expect -----------------------------------------------------------------------------------

@POOLED
@BYTEWISE
@pytest.mark.parametrize("expect", [b"Expect:\r\n", b"Expect:   \r\n"], ids=["empty", "blank"])
async def test_an_empty_expect_expects_nothing(dyno_factory, router_factory, expect, bytewise,
                                               pooled):
    dyno, router, client = await setup(dyno_factory, router_factory, pooled)
    await send_bytes(client.writer, b"POST /e HTTP/1.1\r\n" + HOST + expect
                     + b"Content-Length: 3\r\n\r\nabc", bytewise)
    start, _, _ = await read_head(client.reader)
    assert start == b"HTTP/1.1 200 OK"  # no 100 Continue, no 417
    assert dyno.requests[-1].body == b"abc" and dyno.requests[-1].get("Expect") is None
    await client.close()


# -- HTTP/1.0 ---------------------------------------------------------------------------------

@POOLED
@BYTEWISE
async def test_http10_keep_alive_is_honoured(dyno_factory, router_factory, bytewise, pooled):
    async def mixed(dyno, reader, writer):
        while True:
            request = await dyno.next_request(reader)
            if request.target == b"/chunked":
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nhello\r\n0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    dyno, router, client = await setup(dyno_factory, router_factory, pooled, mixed)
    keep = b"Connection: keep-alive\r\n"
    for target in (b"/1", b"/2"):
        await send_bytes(client.writer, b"GET %s HTTP/1.0\r\n" % target + HOST + keep + b"\r\n",
                         bytewise)
        response = await read_response(client.reader)
        assert response.start == b"HTTP/1.1 200 OK" and response.body == b"ok"
        assert response.get("Connection") == b"keep-alive"
    # A chunked answer cannot go to HTTP/1.0 chunked: close-delimited, then the connection ends.
    await send_bytes(client.writer, b"GET /chunked HTTP/1.0\r\n" + HOST + keep + b"\r\n",
                     bytewise)
    response = await read_response(client.reader)
    assert response.get("Connection") == b"close" and response.body == b"hello"
    assert not response.chunked and await client.closed()
    assert dyno.connections == 1


async def test_http10_without_keep_alive_still_closes(dyno_factory, router_factory):
    dyno, router, client = await setup(dyno_factory, router_factory, False)
    response = await client.request(host="app1.localhost", version="1.0")
    assert response.get("Connection") == b"close" and await client.closed()


@POOLED
@BYTEWISE
@pytest.mark.parametrize("version", [b"1.0", b"1.1"])
@pytest.mark.parametrize("target", [b"/", b"http://app1.localhost/"], ids=["origin", "absolute"])
async def test_a_request_without_host_is_400(dyno_factory, router_factory, version, target,
                                             bytewise, pooled):
    dyno, router, client = await setup(dyno_factory, router_factory, pooled)
    await send_bytes(client.writer, b"GET %s HTTP/%s\r\nAccept: */*\r\n\r\n" % (target, version),
                     bytewise)
    response = await read_response(client.reader)
    assert response.status == 400 and await client.closed()
    fields = router.log_fields()
    assert fields["code"] == "H26" and fields["desc"] == "Bad Host header"
    assert len(dyno.requests) == (1 if pooled else 0)


# -- an upgrade request with a body -----------------------------------------------------------

async def switch_after_body(dyno, reader, writer):
    request = await dyno.next_request(reader)
    if request.get("Upgrade") is None:  # the first, ordinary request (pooled)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        request = await dyno.next_request(reader)
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n"
                 b"\r\nbody was " + request.body + b"\n")
    await writer.drain()
    while data := await reader.read(1024):
        writer.write(data.upper())
        await writer.drain()


@POOLED
@BYTEWISE
async def test_an_upgrade_with_expect_and_a_body_becomes_a_tunnel(dyno_factory, router_factory,
                                                                  bytewise, pooled):
    dyno, router, client = await setup(dyno_factory, router_factory, pooled, switch_after_body)
    await send_bytes(client.writer, b"POST /ws HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\n"
                     b"Upgrade: echo\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
                     bytewise)
    assert (await read_head(client.reader))[0] == b"HTTP/1.1 100 Continue"
    await send_bytes(client.writer, b"0123456789tunnel bytes\n", bytewise)
    start, headers, _ = await read_head(client.reader)
    assert start == b"HTTP/1.1 101 Switching Protocols"
    assert await client.reader.readline() == b"body was 0123456789\n"
    assert await client.reader.readline() == b"TUNNEL BYTES\n"
    seen = dyno.requests[-1]
    assert seen.body == b"0123456789" and seen.get("Expect") is None
    assert router.log_fields()["status"] == "101"
    await client.close()


async def test_an_upgrade_with_a_repeated_length_and_a_body_becomes_a_tunnel(dyno_factory,
                                                                             router_factory):
    # The repeated Content-Length makes the router parse the head again from the bytes it kept
    # (the head came in many reads); the body and the early tunnel bytes follow from there.
    dyno, router, client = await setup(dyno_factory, router_factory, False, switch_after_body)
    await send_bytes(client.writer, b"POST /ws HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\n"
                     b"Upgrade: echo\r\nContent-Length: 10\r\nContent-Length: 10\r\n\r\n"
                     b"0123456789tunnel bytes\n", True)
    start, headers, _ = await read_head(client.reader)
    assert start == b"HTTP/1.1 101 Switching Protocols"
    assert await client.reader.readline() == b"body was 0123456789\n"
    assert await client.reader.readline() == b"TUNNEL BYTES\n"
    assert dyno.requests[-1].body == b"0123456789"
    await client.close()


async def test_an_upgrade_with_a_body_declined_goes_on_as_http(dyno_factory, router_factory):
    dyno, router, client = await setup(dyno_factory, router_factory, False)
    await client.send(b"POST /ws HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\n"
                      b"Upgrade: echo\r\nContent-Length: 3\r\n\r\nabc")
    response = await read_response(client.reader)
    assert response.status == 200 and response.body == b"web.1 /ws abc"
    again = await client.request(host="app1.localhost")
    assert again.body == b"web.1 / " and dyno.connections == 1
    await client.close()


async def test_a_101_before_the_body_is_all_sent_is_h17(dyno_factory, router_factory):
    async def hasty(dyno, reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        await writer.drain()
        await reader.read()

    dyno, router, client = await setup(dyno_factory, router_factory, False, hasty)
    await client.send(b"POST /ws HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\n"
                      b"Upgrade: echo\r\nContent-Length: 10\r\n\r\n01234")
    response = await read_response(client.reader)
    assert response.status == 502 and router.log_fields()["code"] == "H17"
    await client.close()


async def test_bytes_sent_during_a_slow_upgrade_body_are_not_lost(dyno_factory, router_factory):
    first_half = asyncio.Event()

    async def switch_after_slow_body(dyno, reader, writer):
        await read_head(reader)
        body = await reader.readexactly(5)
        first_half.set()  # the client sends the rest only now
        body += await reader.readexactly(5)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
                     b"Connection: Upgrade\r\n\r\nbody was " + body + b"\n")
        await writer.drain()
        while data := await reader.read(1024):
            writer.write(data.upper())
            await writer.drain()

    dyno, router, client = await setup(dyno_factory, router_factory, False,
                                       switch_after_slow_body)
    await client.send(b"POST /ws HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\n"
                      b"Upgrade: echo\r\nContent-Length: 10\r\n\r\n01234")
    async with asyncio.timeout(5):
        await first_half.wait()  # the first half of the body reached the dyno
    await client.send(b"56789after\n")
    assert (await read_head(client.reader))[0] == b"HTTP/1.1 101 Switching Protocols"
    assert await client.reader.readline() == b"body was 0123456789\n"
    assert await client.reader.readline() == b"AFTER\n"
    await client.close()
