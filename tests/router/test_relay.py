"""The router relays requests and responses: headers, framing, keep-alive, pooling, logs."""

import asyncio
import re
import time

from tests.router.conftest import app_entry, table_of, wait_until
from tests.router.wire import build_request, read_head, response_bytes


async def test_get_is_relayed_with_herokus_request_headers(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request("GET", "/hello?x=1", host="app1.localhost",
                                    headers=[("X-Forwarded-For", "203.0.113.7"), ("Via", "1.0 edge")])
    assert response.status == 200
    assert response.body == b"web.1 /hello?x=1 "
    assert response.all("Via") == [b"1.1 dynomesh"]
    (seen,) = dyno.requests
    assert seen.start == b"GET /hello?x=1 HTTP/1.1"
    assert seen.get("Host") == b"app1.localhost"
    assert seen.get("X-Forwarded-For") == b"203.0.113.7, 127.0.0.1"
    assert seen.get("X-Forwarded-Proto") == b"http"
    assert seen.get("X-Forwarded-Port") == str(router.port).encode()
    assert seen.all("Via") == [b"1.0 edge", b"1.1 dynomesh"]
    assert re.fullmatch(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        seen.get("X-Request-Id"))
    start_ms = int(seen.get("X-Request-Start"))  # Unix time in milliseconds
    assert abs(start_ms / 1000 - time.time()) < 60
    await client.close()


async def test_a_valid_client_request_id_is_kept(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.request(host="app1.localhost", headers=[("X-Request-Id", "abcdefghij0123456789")])
    await client.request(host="app1.localhost", headers=[("X-Request-Id", "short")])
    assert dyno.requests[0].all("X-Request-Id") == [b"abcdefghij0123456789"]
    replaced = dyno.requests[1].all("X-Request-Id")
    assert len(replaced) == 1 and replaced[0] != b"short" and len(replaced[0]) == 36
    assert router.log_fields(0)["request_id"] == "abcdefghij0123456789"
    assert router.log_fields(1)["request_id"] == replaced[0].decode()
    await client.close()


async def test_log_line_has_herokus_fields(dyno_factory, router_factory):
    async def hello(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(response_bytes(body=b"Hello, world!"))
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=hello)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.request("POST", "/p?q=1", host="App1.localhost:8080", body=b"abc")
    fields = router.log_fields()
    assert list(fields) == ["at", "method", "path", "host", "request_id", "fwd", "dyno",
                            "connect", "service", "status", "bytes", "protocol"]
    assert fields["at"] == "info" and fields["method"] == "POST" and fields["path"] == "/p?q=1"
    assert fields["host"] == "App1.localhost:8080"
    assert fields["request_id"] == dyno.requests[0].get("X-Request-Id").decode()
    assert fields["fwd"] == "127.0.0.1" and fields["dyno"] == "web.1"
    assert re.fullmatch(r"\d+ms", fields["connect"]) and re.fullmatch(r"\d+ms", fields["service"])
    assert fields["status"] == "200" and fields["bytes"] == "13" and fields["protocol"] == "http"
    line = router.log_lines()[-1]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 heroku\[router\]: at=info ", line)
    await client.close()


async def test_keep_alive_and_one_pooled_connection_per_dyno(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    for i in range(3):
        response = await client.request("GET", f"/{i}", host="app1.localhost")
        assert response.body == f"web.1 /{i} ".encode()
    other = await router.client()
    assert (await other.request(host="app1.localhost")).status == 200
    assert dyno.connections == 1 and len(dyno.requests) == 4
    await client.close()
    await other.close()


async def test_pools_are_never_shared_between_apps(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("one", dynos=[dyno]),
                                           app_entry("two", dynos=[dyno])))
    client = await router.client()
    for host in ("one.localhost", "two.localhost", "one.localhost", "two.localhost"):
        assert (await client.request(host=host)).status == 200
    assert dyno.connections == 2
    await client.close()


async def test_connection_close_from_the_dyno_is_not_reused(dyno_factory, router_factory):
    async def one_shot(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(response_bytes(headers=[("Connection", "close")]))
        await writer.drain()

    dyno = await dyno_factory(handler=one_shot)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    first = await client.request(host="app1.localhost")
    second = await client.request(host="app1.localhost")
    assert first.status == second.status == 200
    assert first.get("Connection") is None  # the client's connection stays open
    assert dyno.connections == 2
    await client.close()


async def test_a_pooled_connection_the_dyno_closed_is_replaced(dyno_factory, router_factory):
    async def silent_close(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(response_bytes())
        await writer.drain()
        writer.close()  # no Connection: close, just gone (an app server's idle timeout)

    dyno = await dyno_factory(handler=silent_close)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    for _ in range(3):
        assert (await client.request(host="app1.localhost")).status == 200
    assert dyno.connections == 3
    await client.close()


async def test_pipelined_requests_are_answered_in_order(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(build_request("GET", "/1", "app1.localhost")
                      + build_request("POST", "/2", "app1.localhost", body=b"two")
                      + build_request("GET", "/3", "app1.localhost"))
    bodies = [(await client.response()).body for _ in range(3)]
    assert bodies == [b"web.1 /1 ", b"web.1 /2 two", b"web.1 /3 "]
    await client.close()


async def test_http10_client_gets_its_answer_and_the_connection_closes(dyno_factory,
                                                                       router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost", version="1.0")
    assert response.status == 200 and response.get("Connection") == b"close"
    assert await client.closed()
    assert dyno.requests[0].start.endswith(b"HTTP/1.1")  # always 1.1 upstream


async def test_head_204_and_304_carry_no_body_and_keep_the_connections(dyno_factory,
                                                                       router_factory):
    async def bodiless(dyno, reader, writer):
        while True:
            request = await dyno.next_request(reader)
            if request.method == b"HEAD":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n")
            elif request.target == b"/204":
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif request.target == b"/304":
                writer.write(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
            else:
                writer.write(response_bytes(body=b"after"))
            await writer.drain()

    dyno = await dyno_factory(handler=bodiless)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    head = await client.request("HEAD", "/", host="app1.localhost")
    assert head.status == 200 and head.get("Content-Length") == b"13" and head.body == b""
    assert (await client.request("GET", "/204", host="app1.localhost")).status == 204
    not_modified = await client.request("GET", "/304", host="app1.localhost")
    assert not_modified.status == 304 and not_modified.get("ETag") == b'"x"'
    last = await client.request("GET", "/", host="app1.localhost")
    assert last.body == b"after"  # framing intact after the bodiless ones
    assert dyno.connections == 1
    assert [router.log_fields(i)["bytes"] for i in range(4)] == ["0", "0", "0", "5"]
    await client.close()


async def test_chunked_request_with_trailers_reaches_the_dyno(dyno_factory, router_factory):
    async def chunked_echo(dyno, reader, writer):
        request = await dyno.next_request(reader)
        trailer = b"".join(b"%s: %s\r\n" % t for t in request.trailers)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                     b"%x\r\n%s\r\n0\r\nX-Sum: 42\r\n%s\r\n" % (len(request.body), request.body,
                                                               trailer))
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=chunked_echo)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(b"POST /up HTTP/1.1\r\nHost: app1.localhost\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n")
    response = await client.response()
    (seen,) = dyno.requests
    assert seen.chunked and seen.body == b"hello world"
    assert seen.trailers == [(b"X-Checksum", b"abc")]
    assert response.chunked and response.body == b"hello world"
    assert response.trailers == [(b"X-Sum", b"42"), (b"X-Checksum", b"abc")]
    assert response.get("Trailer") == b"X-Sum"
    await client.close()


async def test_close_delimited_response_is_rechunked_and_the_client_kept(dyno_factory,
                                                                         router_factory):
    async def until_close(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ")
        await writer.drain()
        writer.write(b"second part")
        await writer.drain()

    dyno = await dyno_factory(handler=until_close)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.chunked and response.body == b"first part, second part"
    again = await client.request(host="app1.localhost")  # same client connection
    assert again.body == b"first part, second part"
    old = await router.client()
    response = await old.request(host="app1.localhost", version="1.0")
    assert not response.chunked and response.body == b"first part, second part"
    await client.close()


async def test_server_sent_events_flow_unbuffered(dyno_factory, router_factory):
    first_seen = asyncio.Event()

    async def events(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Cache-Control: no-cache\r\n\r\ndata: one\n\n")
        await writer.drain()
        await first_seen.wait()  # the next event only once the client has the first
        writer.write(b"data: two\n\n")
        await writer.drain()

    dyno = await dyno_factory(handler=events)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(build_request("GET", "/stream", "app1.localhost",
                                    [("Accept", "text/event-stream")]))
    start, headers, _ = await read_head(client.reader)
    assert start == b"HTTP/1.1 200 OK" and (b"Transfer-Encoding", b"chunked") in headers

    async def next_chunk():
        size = int(await client.reader.readuntil(b"\r\n"), 16)
        data = await client.reader.readexactly(size + 2)
        return data[:-2]

    assert await next_chunk() == b"data: one\n\n"
    first_seen.set()
    assert await next_chunk() == b"data: two\n\n"
    assert await next_chunk() == b""  # the dyno closed: last chunk
    await client.close()


async def test_wildcard_host_routes_to_its_app(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(
        app_entry("app1", hosts=["app1.localhost", "*.example.com"], dynos=[dyno])))
    client = await router.client()
    assert (await client.request(host="tenant.example.com")).status == 200
    assert (await client.request(host="TENANT.example.com:80")).status == 200
    assert dyno.requests[0].get("Host") == b"tenant.example.com"  # passed through as sent
    await client.close()


async def test_requests_spread_over_dynos_and_a_refused_one_is_skipped(dyno_factory,
                                                                       router_factory,
                                                                       unused_port):
    web1 = await dyno_factory("web.1")
    web2 = await dyno_factory("web.2")
    table = table_of({"name": "app1", "hosts": ["app1.localhost"], "dynos": [
        {"name": "web.1", "address": web1.address}, {"name": "web.2", "address": web2.address},
        {"name": "web.3", "address": f"127.0.0.1:{unused_port}"}]})
    router = await router_factory(table)
    for _ in range(12):
        client = await router.client()
        assert (await client.request(host="app1.localhost")).status == 200
        await client.close()
    assert web1.requests and web2.requests
    assert len(web1.requests) + len(web2.requests) == 12
    assert {router.log_fields(i)["dyno"] for i in range(12)} == {"web.1", "web.2"}


async def test_client_gone_mid_response_is_logged_h27(dyno_factory, router_factory):
    stalled = asyncio.Event()

    async def slow(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        stalled.set()
        await reader.read()  # until the router closes this connection

    dyno = await dyno_factory(handler=slow)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(build_request(host="app1.localhost"))
    await read_head(client.reader)
    await stalled.wait()
    client.writer.transport.abort()
    await wait_until(lambda: any("code=H27" in line for line in router.log_lines()), 3)
    fields = router.log_fields()
    assert fields["status"] == "499" and fields["desc"] == "Client Request Interrupted"
    assert router.router.metrics.apps["app1"].in_flight == 0


async def test_an_early_answer_to_an_upload_reaches_the_client_still_sending(dyno_factory,
                                                                            router_factory):
    async def refuse_upload(dyno, reader, writer):
        await read_head(reader)
        writer.write(response_bytes(413, b"too big", reason="Content Too Large",
                                    headers=[("Connection", "close")]))
        await writer.drain()

    dyno = await dyno_factory(handler=refuse_upload)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    size = 32 << 20
    await client.send(b"PUT /big HTTP/1.1\r\nHost: app1.localhost\r\nContent-Length: %d\r\n\r\n"
                      % size)

    async def upload():
        chunk = b"x" * (1 << 20)
        for _ in range(size >> 20):  # the router reads (and drops) it all: no reset
            await client.send(chunk)

    await upload()
    response = await client.response()
    assert response.status == 413 and response.body == b"too big"
    assert await client.closed()
    assert router.log_fields()["status"] == "413"
