"""Edge cases of dynos' responses: bytes after a response that has no body, an answer that
comes while the client is still uploading, a broken trailer section, and status lines the
router relays as they are. Each is sent in one write and one byte per write, on a fresh and on
a pooled dyno connection, where it applies."""

import asyncio

import pytest

from tests.router.conftest import app_entry, table_of
from tests.router.wire import build_request, read_head, read_response, send_bytes

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
STRAY = b"this is a body"  # 14 bytes that belong to no response

# (name, what the dyno sends after reading the request, status the client sees)
BODILESS = [
    ("204 with Content-Length and a body",
     b"HTTP/1.1 204 No Content\r\nContent-Length: 14\r\n\r\n" + STRAY, 204),
    ("304 with Content-Length and a body",
     b"HTTP/1.1 304 Not Modified\r\nContent-Length: 14\r\n\r\n" + STRAY, 304),
    ("204 with chunked and a last chunk",
     b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 204),
    ("304 followed by a response nobody asked for",
     b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n" + OK, 304),
]


def scripted(answer: bytes, bytewise: bool, pooled: bool, sent: asyncio.Event | None = None):
    """A dyno whose first connection answers its first request with OK when `pooled`, then
    `answer`; every other request gets OK."""
    async def handler(dyno, reader, writer):
        first = dyno.connections == 1
        if first and pooled:
            await dyno.next_request(reader)
            writer.write(OK)
            await writer.drain()
        if first:
            await dyno.next_request(reader)
            await send_bytes(writer, answer, bytewise)
            if sent is not None:
                sent.set()
        while True:
            await dyno.next_request(reader)
            writer.write(OK)
            await writer.drain()
    return handler


@pytest.mark.parametrize("pooled", [False, True], ids=["fresh", "pooled"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])
@pytest.mark.parametrize("name, answer, status", BODILESS, ids=[case[0] for case in BODILESS])
async def test_bytes_after_a_bodiless_response_are_dropped_with_the_dyno_connection(
        dyno_factory, router_factory, name, answer, status, bytewise, pooled):
    sent = asyncio.Event()
    dyno = await dyno_factory(handler=scripted(answer, bytewise, pooled, sent))
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    if pooled:
        assert (await client.request(host="app1.localhost")).body == b"ok"
    await client.send(build_request(host="app1.localhost"))
    start, headers, _ = await read_head(client.reader)
    assert start.split(b" ")[1] == str(status).encode()
    assert (b"Connection", b"close") not in headers
    await sent.wait()
    # The client connection goes on, and nothing of the stray bytes ever reaches it.
    again = await client.request(host="app1.localhost")
    assert again.status == 200 and again.body == b"ok"
    lines = router.log_lines()
    assert not any("at=error" in line for line in lines), lines
    fields = router.log_fields(-2)
    assert fields["status"] == str(status) and fields["bytes"] == "0"
    if not bytewise:  # found while relaying that response: its line says so
        assert fields["dyno_connection"] == "closed"
    assert dyno.connections == 2  # the dyno connection with stray bytes was closed
    await client.close()


@pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])
async def test_a_304_and_then_the_dyno_closing(dyno_factory, router_factory, bytewise):
    async def handler(dyno, reader, writer):
        await dyno.next_request(reader)
        await send_bytes(writer, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 14\r\n\r\n",
                         bytewise)
        writer.close()

    dyno = await dyno_factory(handler=handler)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.status == 304 and response.body == b""
    second = await client.request(host="app1.localhost")  # a new dyno connection
    assert second.status == 304
    assert [router.log_fields(i)["status"] for i in range(2)] == ["304", "304"]
    await client.close()


@pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])
async def test_a_304_to_a_client_that_asked_to_close(dyno_factory, router_factory, bytewise):
    dyno = await dyno_factory(handler=scripted(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 14\r\n\r\n" + STRAY, bytewise, False))
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost", headers=[("Connection", "close")])
    assert response.status == 304 and response.get("Connection") == b"close"
    assert await client.closed()
    fields = router.log_fields()
    assert fields["status"] == "304" and "code" not in fields


# -- an early answer while the client uploads ------------------------------------------------

EARLY = [
    ("304 with Connection: close", b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n", 304),
    ("413", b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 7\r\n\r\ntoo big", 413),
    ("401", b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 4\r\n"
            b"\r\nnope", 401),
]


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("pooled", [False, True], ids=["fresh", "pooled"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])
@pytest.mark.parametrize("name, answer, status", EARLY, ids=[case[0] for case in EARLY])
async def test_an_early_answer_reaches_a_client_still_uploading(
        dyno_factory, router_factory, name, answer, status, bytewise, pooled, chunked):
    finished = asyncio.Event()

    async def handler(dyno, reader, writer):
        if pooled and dyno.connections == 1:
            await dyno.next_request(reader)
            writer.write(OK)
            await writer.drain()
        await read_head(reader)  # the head only: the body is never read
        await send_bytes(writer, answer, bytewise)
        await finished.wait()  # reads nothing more, and keeps the connection open

    dyno = await dyno_factory(handler=handler)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    if pooled:
        assert (await client.request(host="app1.localhost")).body == b"ok"
    framing = (b"Transfer-Encoding: chunked\r\n\r\n" if chunked
               else b"Content-Length: 16000\r\n\r\n")
    await client.send(b"POST /upload HTTP/1.1\r\nHost: app1.localhost\r\n" + framing)
    stop = asyncio.Event()
    # Each piece a whole chunk when chunked: the upload stays well-framed however long the
    # answer takes (a 16-byte chunk trickled 10 bytes at a time broke its framing after two
    # pieces, and a slow answer then lost the race to the router's 400).
    piece = b"a\r\n" + b"x" * 10 + b"\r\n" if chunked else b"x" * 10

    async def trickle():
        while not stop.is_set():
            try:
                await client.send(piece)
            except ConnectionError:
                return
            await asyncio.sleep(0.01)

    trickling = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(5):
            response = await read_response(client.reader)
        assert response.status == status
        assert response.get("Connection") == b"close"
        async with asyncio.timeout(10):
            assert await client.closed()
    finally:
        stop.set()
        finished.set()
        await trickling
    fields = router.log_fields()
    assert fields["status"] == str(status) and "code" not in fields
    await client.close()


# -- a trailer section that is not header fields ---------------------------------------------

BAD_TRAILER = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
               b"0\r\nX-Sum\r\n\r\n")


@pytest.mark.parametrize("pooled", [False, True], ids=["fresh", "pooled"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])
async def test_an_invalid_response_trailer_never_completes_the_message(
        dyno_factory, router_factory, bytewise, pooled):
    dyno = await dyno_factory(handler=scripted(BAD_TRAILER, bytewise, pooled))
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    if pooled:
        assert (await client.request(host="app1.localhost")).body == b"ok"
    await client.send(build_request(host="app1.localhost"))
    start, headers, _ = await read_head(client.reader)
    received = await client.reader.read()  # until the router closes
    if start.startswith(b"HTTP/1.1 502"):  # found before anything was sent: a page
        assert b"<code>H17</code>" in received
    else:
        assert start == b"HTTP/1.1 200 OK" and (b"Transfer-Encoding", b"chunked") in headers
        assert bytewise
        body, rest = bytearray(), received
        while rest:  # the body as it was relayed, never a last chunk: an incomplete message
            size, _, rest = rest.partition(b"\r\n")
            assert int(size, 16) > 0 and rest[int(size, 16):int(size, 16) + 2] == b"\r\n"
            body += rest[:int(size, 16)]
            rest = rest[int(size, 16) + 2:]
        assert body == b"hello"
    fields = router.log_fields()
    assert fields["code"] == "H17"
    assert router.router.backends.idle_connections() == 0
    await client.close()


# -- status lines ----------------------------------------------------------------------------

STATUS_LINES = [
    b"HTTP/1.1 666 Custom",
    b"HTTP/1.1 999 ",
    b"HTTP/1.1 421 Deliberate Phrase",
    b"HTTP/1.1 200 ",
    b"HTTP/1.1 200 Fine, thanks \t(\xe9)",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 404 Not Found",
]


@pytest.mark.parametrize("pooled", [False, True], ids=["fresh", "pooled"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])
@pytest.mark.parametrize("line", STATUS_LINES, ids=[line.decode("latin-1") for line in STATUS_LINES])
async def test_the_status_line_is_relayed_as_the_dyno_sent_it(dyno_factory, router_factory, line,
                                                             bytewise, pooled):
    dyno = await dyno_factory(handler=scripted(line + b"\r\nContent-Length: 2\r\n\r\nhi",
                                               bytewise, pooled))
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    if pooled:
        assert (await client.request(host="app1.localhost")).body == b"ok"
    response = await client.request(host="app1.localhost")
    assert response.start == line and response.body == b"hi"
    assert router.log_fields()["status"] == line.split(b" ")[1].decode()
    assert (await client.request(host="app1.localhost")).body == b"ok"  # the connection goes on
    await client.close()


async def test_a_status_line_without_a_reason_gets_an_empty_one(dyno_factory, router_factory):
    dyno = await dyno_factory(handler=scripted(b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi",
                                               False, False))
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.start == b"HTTP/1.1 200 " and response.body == b"hi"
    await client.close()


@pytest.mark.parametrize("reason", [b"a\x00b", b"a\x01b", b"a\x7fb"], ids=["NUL", "SOH", "DEL"])
async def test_a_reason_with_control_characters_is_h17(dyno_factory, router_factory, reason):
    dyno = await dyno_factory(handler=scripted(
        b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 0\r\n\r\n", False, False))
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.status == 502 and router.log_fields()["code"] == "H17"
    await client.close()
