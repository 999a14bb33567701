"""Malformed and oversized requests: the router answers (400, 414, 417, 501, 505; H26) and
closes, and the dyno never receives them. Each input is sent in one write and one byte per
write, with the dyno connection fresh and pooled (a good request first, on the same client
connection), and the pool must stay good afterwards."""

import pytest

from tests.router.conftest import app_entry, table_of
from tests.router.wire import build_request, read_response, send_bytes

HOST = b"Host: app1.localhost\r\n"
GET = b"GET / HTTP/1.1\r\n"
CHUNKED_POST = b"POST /up HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"

# (name, bytes sent, status, desc, reaches the dyno's connection before the error)
CASES = [
    ("request line over 8192", b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
     414, "Request line too long", False),
    ("header name over 1000", GET + HOST + b"X" * 1001 + b": v\r\n\r\n",
     400, "Header line too long", False),
    ("header line over 8192", GET + HOST + b"X-Long: " + b"v" * 8200 + b"\r\n\r\n",
     400, "Header line too long", False),
    ("1001 headers", GET + HOST + b"X: 1\r\n" * 1001 + b"\r\n", 400, "Too many headers", False),
    ("no Host", GET + b"Accept: */*\r\n\r\n", 400, "Bad Host header", False),
    ("empty Host", GET + b"Host:\r\n\r\n", 400, "Bad Host header", False),
    ("two Hosts", GET + HOST + HOST + b"\r\n", 400, "Bad Host header", False),
    ("malformed Host", GET + b"Host: app1 localhost\r\n\r\n", 400, "Bad Host header", False),
    ("CONNECT", b"CONNECT app1.localhost:443 HTTP/1.1\r\n" + HOST + b"\r\n",
     400, "CONNECT not supported", False),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 505, "HTTP version not supported",
     False),
    ("HTTP/0.9", b"GET / HTTP/0.9\r\n" + HOST + b"\r\n", 505, "HTTP version not supported",
     False),
    ("HTTP/3.0", b"GET / HTTP/3.0\r\n" + HOST + b"\r\n", 505, "HTTP version not supported",
     False),
    ("two Content-Lengths", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "Request Error", False),
    ("listed Content-Length", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 3, 3\r\n\r\nabc",
     400, "Request Error", False),
    ("bad chunk size", CHUNKED_POST + b"3x\r\nabc\r\n0\r\n\r\n", 400, "Request Error", True),
    ("chunk without CRLF", CHUNKED_POST + b"3\r\nabcX\r\n0\r\n\r\n", 400, "Request Error", True),
    ("trailer without colon", CHUNKED_POST + b"0\r\nX-Sum\r\n\r\n", 400, "Request Error", True),
    ("Host in trailers", CHUNKED_POST + b"0\r\nHost: evil\r\n\r\n", 400, "Invalid trailers",
     True),
    ("bare LF after request line", b"GET / HTTP/1.1\n" + HOST + b"\r\n", 400, "Request Error",
     False),
    ("bare LF after a header", GET + b"Host: app1.localhost\nX: 1\r\n\r\n", 400,
     "Request Error", False),
    ("obs-fold", GET + HOST + b"X: a\r\n b\r\n\r\n", 400, "Request Error", False),
    ("space before colon", GET + b"Host : app1.localhost\r\n\r\n", 400, "Request Error", False),
    ("CR in a value", GET + HOST + b"X: a\rb\r\n\r\n", 400, "Request Error", False),
    ("NUL in a value", GET + HOST + b"X: a\x00b\r\n\r\n", 400, "Request Error", False),
    ("Expect other than 100-continue", b"POST / HTTP/1.1\r\n" + HOST
     + b"Expect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417, "Expectation failed", False),
    ("transfer coding other than chunked", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
     "Unsupported transfer coding", False),
    ("Transfer-Encoding in HTTP/1.0", b"POST / HTTP/1.0\r\n" + HOST
     + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Ambiguous message framing", False),
    ("upgrade with a chunked body", b"POST / HTTP/1.1\r\n" + HOST
     + b"Connection: Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n", 400, "Ambiguous message framing", False),
    ("unknown method", b"BREW / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "Request Error", False),
    ("control byte in the target", b"GET /a\x01b HTTP/1.1\r\n" + HOST + b"\r\n", 400,
     "Request Error", False),
    ("ftp target", b"GET ftp://app1.localhost/ HTTP/1.1\r\n" + HOST + b"\r\n", 400,
     "Bad request target", False),
    ("asterisk for GET", b"GET * HTTP/1.1\r\n" + HOST + b"\r\n", 400, "Bad request target",
     False),
]


@pytest.mark.parametrize("pooled", [False, True], ids=["fresh", "pooled"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])
@pytest.mark.parametrize("name, raw, status, desc, reaches_dyno", CASES,
                         ids=[case[0] for case in CASES])
async def test_refused_and_never_forwarded(dyno_factory, router_factory, name, raw,
                                           status, desc, reaches_dyno, bytewise, pooled):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    if pooled:
        assert (await client.request(host="app1.localhost")).status == 200
    await send_bytes(client.writer, raw, bytewise)
    response = await read_response(client.reader)
    assert response.status == status
    assert response.get("Connection") == b"close" and await client.closed()
    fields = router.log_fields()
    assert fields["desc"] == desc and fields["code"] == "H26"
    assert fields["status"] == str(status)
    assert len(dyno.requests) == (1 if pooled else 0)  # the bad one never arrived whole
    # The pool is not poisoned: the next request is answered, on the pooled connection if
    # the bad request never got to it.
    other = await router.client()
    assert (await other.request(host="app1.localhost")).status == 200
    if pooled or not reaches_dyno:
        assert dyno.connections == (2 if reaches_dyno else 1)
    else:  # the bad body may be found before the new dyno connection is even open
        assert dyno.connections in (1, 2)
    await other.close()
    await client.close()


@pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])
async def test_a_request_after_the_bad_one_is_never_read(dyno_factory, router_factory,
                                                        bytewise):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    smuggled = build_request("GET", "/smuggled", "app1.localhost")
    await send_bytes(client.writer, GET + HOST + b"X: a\r\n b\r\n\r\n" + smuggled, bytewise)
    response = await read_response(client.reader)
    assert response.status == 400 and await client.closed()
    assert dyno.requests == []


async def test_requests_before_the_bad_one_are_answered_first(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(build_request("GET", "/1", "app1.localhost")
                      + build_request("GET", "/2", "app1.localhost") + b"GET / HTTP/1.1\n\n")
    first, second, third = [await client.response() for _ in range(3)]
    assert (first.body, second.body) == (b"web.1 /1 ", b"web.1 /2 ")
    assert third.status == 400 and await client.closed()
    assert [r.target for r in dyno.requests] == [b"/1", b"/2"]


async def test_both_length_and_chunked_chunked_wins_and_the_connection_closes(dyno_factory,
                                                                            router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 100\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                      + build_request("GET", "/after", "app1.localhost"))
    response = await client.response()
    assert response.status == 200 and response.body == b"web.1 /up abc"
    assert response.get("Connection") == b"close" and await client.closed()
    (seen,) = dyno.requests  # RFC 9112 §6.1: nothing after it is processed
    assert seen.get("Content-Length") is None and seen.chunked and seen.body == b"abc"


async def test_absolute_form_is_routed_by_its_authority(dyno_factory, router_factory):
    one, two = await dyno_factory("web.1"), await dyno_factory("web.1")
    router = await router_factory(table_of(app_entry("one", dynos=[one]),
                                           app_entry("two", dynos=[two])))
    client = await router.client()
    await client.send(b"GET http://two.localhost/path?q=1 HTTP/1.1\r\nHost: one.localhost\r\n\r\n")
    response = await client.response()
    assert response.status == 200 and one.requests == []
    (seen,) = two.requests
    assert seen.start == b"GET /path?q=1 HTTP/1.1" and seen.all("Host") == [b"two.localhost"]
    await client.close()


async def test_options_asterisk_is_relayed(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    assert (await client.request("OPTIONS", "*", host="app1.localhost")).status == 200
    assert dyno.requests[0].start == b"OPTIONS * HTTP/1.1"
    await client.close()


async def test_an_unknown_but_valid_host_is_still_404(router_factory):
    router = await router_factory(table_of({"name": "app1", "hosts": ["app1.localhost"]}))
    client = await router.client()
    assert (await client.request(host="other.localhost:8080")).status == 404
    await client.close()
