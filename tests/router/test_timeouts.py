"""Timeouts, kept by the router's periodic sweep: the head (408 / silent close), the request
(H12), the rolling idle window (H15 dyno, H28 client), connects (H19) with quarantine."""

import asyncio
import socket

import pytest

from tests.router.conftest import app_entry, table_of, wait_until
from tests.router.wire import build_request, read_head, response_bytes


async def test_a_dyno_that_never_answers_is_h12(dyno_factory, router_factory):
    hung_up = asyncio.Event()

    async def silent(dyno, reader, writer):
        await dyno.next_request(reader)
        assert await reader.read() == b""  # until the router gives up on it
        hung_up.set()

    dyno = await dyno_factory(handler=silent)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])),
                                  request_timeout=0.3)
    client = await router.client()
    response = await client.request("POST", "/slow", host="app1.localhost", body=b"abc")
    assert response.status == 503 and b"H12" in response.body and await client.closed()
    await hung_up.wait()  # the dyno connection is closed, not pooled
    fields = router.log_fields()
    assert (fields["code"], fields["desc"], fields["status"]) == ("H12", "Request timeout", "503")
    assert int(fields["service"].rstrip("ms")) >= 200
    assert router.router.metrics.apps["app1"].in_flight == 0


async def test_an_apps_own_request_timeout_wins(dyno_factory, router_factory):
    async def silent(dyno, reader, writer):
        await dyno.next_request(reader)
        await reader.read()

    dyno = await dyno_factory(handler=silent)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno],
                                                     request_timeout=0.2)),
                                  request_timeout=60)
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.status == 503 and router.log_fields()["code"] == "H12"


async def test_a_dyno_that_stalls_mid_response_is_h15_and_the_client_is_cut(dyno_factory,
                                                                           router_factory):
    async def stall(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst bytes")
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=stall)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])), idle_timeout=0.3)
    client = await router.client()
    await client.send(build_request(host="app1.localhost"))
    rest = await client.reader.read()  # until the router cuts the connection
    assert rest.startswith(b"HTTP/1.1 200 OK") and rest.endswith(b"first bytes")
    fields = router.log_fields()
    assert (fields["code"], fields["desc"], fields["status"]) == ("H15", "Idle connection", "200")


async def test_a_slow_but_steady_response_is_not_idle(dyno_factory, router_factory):
    async def trickle(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
        for _ in range(8):  # 0.8 s in all, never 0.5 s without a byte
            await asyncio.sleep(0.1)
            writer.write(b"x")
            await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=trickle)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])), idle_timeout=0.5)
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.status == 200 and response.body == b"x" * 8
    await client.close()


async def test_a_client_that_stops_sending_its_body_is_h28(dyno_factory, router_factory):
    dropped = asyncio.Event()

    async def wait_for_body(dyno, reader, writer):
        await read_head(reader)
        assert await reader.read() == b"part"  # then the router closes this connection
        dropped.set()

    dyno = await dyno_factory(handler=wait_for_body)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])), idle_timeout=0.3)
    client = await router.client()
    await client.send(b"POST / HTTP/1.1\r\nHost: app1.localhost\r\nContent-Length: 10\r\n\r\npart")
    response = await client.response()
    assert response.status == 499 and await client.closed()
    await dropped.wait()
    fields = router.log_fields()
    assert (fields["code"], fields["desc"]) == ("H28", "Client Connection Idle")


async def test_a_client_that_stops_reading_is_h28(dyno_factory, router_factory):
    async def flood(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (256 << 20))
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(256):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass  # the router gave up on the client and closed this connection

    dyno = await dyno_factory(handler=flood)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])), idle_timeout=0.3)
    sock = socket.create_connection(("127.0.0.1", router.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(build_request(host="app1.localhost"))
    try:  # read nothing: the buffers fill, the router pauses the dyno, then times out
        await wait_until(lambda: any("code=H28" in line for line in router.log_lines()), 10)
    finally:
        sock.close()
    fields = router.log_fields()
    assert fields["status"] == "200" and fields["desc"] == "Client Connection Idle"


async def test_a_dyno_that_stops_reading_the_body_is_h15(dyno_factory, router_factory):
    async def deaf(dyno, reader, writer):
        await read_head(reader)
        await asyncio.Event().wait()  # reads no body at all

    dyno = await dyno_factory(handler=deaf)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])), idle_timeout=0.3)
    client = await router.client()
    size = 256 << 20
    await client.send(b"PUT / HTTP/1.1\r\nHost: app1.localhost\r\nContent-Length: %d\r\n\r\n" % size)

    async def upload():
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(size >> 20):
                await client.send(chunk)
        except ConnectionError:
            pass  # the router stopped reading and answered

    sending = asyncio.create_task(upload())
    response = await client.response()
    assert response.status == 503 and b"H15" in response.body
    assert router.log_fields()["code"] == "H15"
    sending.cancel()
    await client.close()


async def test_a_head_that_does_not_finish_in_time_is_408(router_factory):
    router = await router_factory(table_of({"name": "app1", "hosts": ["app1.localhost"]}),
                                  header_timeout=0.3)
    client = await router.client()
    await client.send(b"GET / HTTP/1.1\r\nHost: app1")
    response = await client.response()
    assert response.status == 408 and await client.closed()
    assert router.log_fields()["desc"] == "Request header timeout"


async def test_an_idle_keep_alive_connection_closes_silently(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])),
                                  header_timeout=0.3)
    client = await router.client()
    assert (await client.request(host="app1.localhost")).status == 200
    lines = len(router.log_lines())
    assert await client.reader.read() == b""  # nothing sent: no 408, just closed
    assert len(router.log_lines()) == lines


@pytest.fixture
async def blackhole():
    """A port that never accepts: its listen backlog is full, so SYNs go unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):  # fill the accept queue (backlog 0 holds one, plus slack)
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(listener.getsockname())
        except BlockingIOError:
            pass
        fillers.append(filler)
    yield listener.getsockname()[1]
    for sock in fillers + [listener]:
        sock.close()


async def test_a_dyno_that_does_not_accept_is_h19_then_quarantined(dyno_factory,
                                                                  router_factory, blackhole):
    router = await router_factory(table_of({"name": "app1", "hosts": ["app1.localhost"],
                                            "dynos": [{"name": "web.1",
                                                       "address": f"127.0.0.1:{blackhole}"}]}),
                                  connect_timeout=0.2)
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.status == 503 and b"H19" in response.body
    fields = router.log_fields()
    assert (fields["code"], fields["desc"]) == ("H19", "Backend connection timeout")
    (pool,) = router.router.backends.bound["app1"].pools
    assert pool in router.router.quarantine


async def test_a_quarantined_dyno_is_skipped_while_others_serve(dyno_factory, router_factory,
                                                                blackhole):
    good = await dyno_factory("web.2")
    router = await router_factory(table_of({"name": "app1", "hosts": ["app1.localhost"], "dynos": [
        {"name": "web.1", "address": f"127.0.0.1:{blackhole}"},
        {"name": "web.2", "address": good.address}]}), connect_timeout=0.2)
    for _ in range(6):
        client = await router.client()
        assert (await client.request(host="app1.localhost")).status == 200
        await client.close()
    assert len(good.requests) == 6
    stuck, healthy = router.router.backends.bound["app1"].pools
    # At most one request waited for the silent dyno; after it, web.1 was skipped.
    assert stuck in router.router.quarantine and healthy not in router.router.quarantine
    assert stuck.in_flight == 0


async def test_when_all_dynos_are_quarantined_the_oldest_is_tried(dyno_factory,
                                                                 router_factory):
    web1, web2 = await dyno_factory("web.1"), await dyno_factory("web.2")
    ports = {"web.1": web1.port, "web.2": web2.port}
    await web1.stop()
    await web2.stop()
    router = await router_factory(table_of(app_entry("app1", dynos=[web1, web2])))
    client = await router.client()
    assert (await client.request(host="app1.localhost")).status == 503  # both refused: H21
    quarantine = router.router.quarantine
    oldest = next(iter(quarantine.members))
    assert len(quarantine.members) == 2
    revived = await dyno_factory(oldest.dyno.name)
    revived.port = ports[oldest.dyno.name]
    revived.server = await asyncio.start_server(revived._accept, "127.0.0.1", revived.port)
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.status == 200 and response.body.startswith(oldest.dyno.name.encode())
    assert oldest not in quarantine  # it accepted: healthy again


async def test_a_pooled_connection_dying_before_the_response_is_retried_only_if_safe(
        dyno_factory, router_factory):
    async def hang_up_on_the_second(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(response_bytes())
        await writer.drain()
        if dyno.connections == 1:
            await read_head(reader)  # the next request on this connection: no answer
            return
        while True:
            await dyno.next_request(reader)
            writer.write(response_bytes())
            await writer.drain()

    dyno = await dyno_factory(handler=hang_up_on_the_second)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    assert (await client.request(host="app1.localhost")).status == 200
    assert (await client.request("GET", "/again", host="app1.localhost")).status == 200
    assert dyno.connections == 2  # GET: sent once more on a fresh connection

    dyno.connections = 0
    other = await dyno_factory(handler=hang_up_on_the_second)
    router = await router_factory(table_of(app_entry("app1", dynos=[other])))
    client = await router.client()
    assert (await client.request(host="app1.localhost")).status == 200
    response = await client.request("POST", "/pay", host="app1.localhost", body=b"1")
    assert response.status == 503 and router.log_fields()["code"] == "H13"
    assert other.connections == 1  # POST: never sent twice


async def test_a_client_gone_mid_request_is_h27_and_the_dyno_connection_closes(dyno_factory,
                                                                              router_factory):
    dropped = asyncio.Event()

    async def wait_for_body(dyno, reader, writer):
        await read_head(reader)
        assert await reader.read() == b"par"  # then the router closes this connection
        dropped.set()

    dyno = await dyno_factory(handler=wait_for_body)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(b"POST / HTTP/1.1\r\nHost: app1.localhost\r\nContent-Length: 10\r\n\r\npar")
    await wait_until(lambda: any(c.serving is not None and c.serving.upstream is not None
                                 for c in router.router.clients))
    client.writer.transport.abort()
    await dropped.wait()
    await wait_until(lambda: any("code=H27" in line for line in router.log_lines()))
    fields = router.log_fields()
    assert (fields["status"], fields["method"]) == ("499", "POST")
    assert router.router.metrics.apps["app1"].in_flight == 0
