"""A dyno's malformed or oversized responses: H17 / H25 (502), the dyno connection closed, the
client given a page (or cut, once the response had started). Each is sent in one write and
one byte per write, on a fresh and on a pooled dyno connection."""

import pytest

from tests.router.conftest import app_entry, table_of
from tests.router.wire import send_bytes

OK = b"HTTP/1.1 200 OK\r\n"
BIG_HEADER = b"X-Big: " + b"v" * (512 * 1024) + b"\r\n"

# (name, response bytes, code)
CASES = [
    ("status line over 8192", b"HTTP/1.1 200 " + b"O" * 8200 + b"\r\nContent-Length: 0\r\n\r\n",
     "H25"),
    ("Set-Cookie over 8192", OK + b"Set-Cookie: a=" + b"c" * 8200 + b"\r\n"
     b"Content-Length: 0\r\n\r\n", "H25"),
    ("1001 headers", OK + b"X: 1\r\n" * 1001 + b"Content-Length: 0\r\n\r\n", "H25"),
    ("conflicting Content-Length", OK + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
     "H17"),
    ("listed Content-Length", OK + b"Content-Length: 2, 2\r\n\r\nab", "H17"),
    ("header without a colon", OK + b"Broken header\r\nContent-Length: 0\r\n\r\n", "H17"),
    ("obs-fold", OK + b"X: a\r\n b\r\nContent-Length: 0\r\n\r\n", "H17"),
    ("bare LF", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "H17"),
    ("NUL in a value", OK + b"X: a\x00b\r\nContent-Length: 0\r\n\r\n", "H17"),
    ("transfer coding other than chunked", OK + b"Transfer-Encoding: gzip\r\n\r\nabc", "H17"),
    ("four-digit status", b"HTTP/1.1 1000 Odd\r\nContent-Length: 0\r\n\r\n", "H17"),
    ("control in the reason", b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n", "H17"),
    ("not HTTP", b"SSH-2.0-OpenSSH_9.6\r\n", "H17"),
]


def answering(bad: bytes, bytewise: bool, pooled: bool):
    async def handler(dyno, reader, writer):
        if pooled and dyno.connections == 1:
            await dyno.next_request(reader)
            writer.write(OK + b"Content-Length: 2\r\n\r\nok")
            await writer.drain()
        await dyno.next_request(reader)
        await send_bytes(writer, bad, bytewise)
        await reader.read()
    return handler


@pytest.mark.parametrize("pooled", [False, True], ids=["fresh", "pooled"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])
@pytest.mark.parametrize("name, bad, code", CASES, ids=[case[0] for case in CASES])
async def test_bad_responses_become_router_errors(dyno_factory, router_factory, name, bad, code,
                                                  bytewise, pooled):
    dyno = await dyno_factory(handler=answering(bad, bytewise, pooled))
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    if pooled:
        assert (await client.request(host="app1.localhost")).body == b"ok"
    response = await client.request(host="app1.localhost")
    assert response.status == 502 and f"<code>{code}</code>".encode() in response.body
    assert await client.closed()
    fields = router.log_fields()
    assert fields["code"] == code and fields["status"] == "502"
    assert router.router.backends.idle_connections() == 0  # that connection is not reused


async def test_a_header_line_over_512k_is_h25(dyno_factory, router_factory):
    dyno = await dyno_factory(handler=answering(OK + BIG_HEADER + b"Content-Length: 0\r\n\r\n",
                                                False, False))
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.status == 502 and router.log_fields()["code"] == "H25"


async def test_a_header_line_that_never_ends_is_stopped(dyno_factory, router_factory):
    async def endless(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(OK + b"X-Endless: ")
        try:
            for _ in range(64):  # 4 MiB, far past the limit, never a line end
                writer.write(b"v" * 65536)
                await writer.drain()
        except ConnectionError:
            pass  # the router hung up

    dyno = await dyno_factory(handler=endless)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.status == 502 and router.log_fields()["code"] == "H25"


async def test_large_but_allowed_response_heads_pass(dyno_factory, router_factory):
    head = (OK + b"Set-Cookie: a=" + b"c" * 8000 + b"\r\n" + b"X-Big: " + b"v" * 300000 + b"\r\n"
            + b"X: 1\r\n" * 900 + b"Content-Length: 2\r\n\r\nok")
    dyno = await dyno_factory(handler=answering(head, False, False))
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.status == 200 and response.body == b"ok"
    assert len(response.get("X-Big")) == 300000


async def test_forbidden_trailers_from_a_dyno_are_dropped(dyno_factory, router_factory):
    async def trailers(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
                          b"X-Sum: 1\r\nSet-Cookie: late=1\r\n\r\n")
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=trailers)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.body == b"ok" and response.trailers == [(b"X-Sum", b"1")]
