"""HTTP/2 to clients (router/h2conn.py, h2stream.py): real TLS sockets on loopback, the `h2`
library and curl as clients, scripted dynos behind the in-process router."""

from __future__ import annotations

import asyncio

import pytest

from tests.router.conftest import app_entry, table_of, wait_until
from tests.router.h2wire import H2Client, certificates, h2_listener

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def certs():
    return certificates("app1.localhost")


@pytest.fixture
async def edge(router_factory, dyno_factory, certs):
    """A router with app1 on one echoing dyno, and an HTTP/2 listener in front of it."""
    dyno = await dyno_factory("web.1")
    routed = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    server = await h2_listener(routed.router, certs.server)
    routed.h2_port = server.sockets[0].getsockname()[1]
    routed.dyno = dyno
    clients: list[H2Client] = []

    async def connect(**options) -> H2Client:
        client = await H2Client.connect(routed.h2_port, certs, **options)
        clients.append(client)
        return client

    routed.connect = connect
    yield routed
    for client in clients:
        await client.close()
    server.close()


async def test_a_request_reaches_the_dyno_as_http11_with_the_usual_fields(edge):
    client = await edge.connect()
    response = await client.get("/hello?x=1", headers=[("cookie", "a=1"), ("cookie", "b=2")])
    assert response.status == 200
    assert bytes(response.body) == b"web.1 /hello?x=1 "
    assert response.get(b"via") == b"1.1 dynomesh"
    assert response.get(b"connection") is None  # connection-specific: never over HTTP/2
    request = edge.dyno.requests[-1]
    assert request.start == b"GET /hello?x=1 HTTP/1.1"
    assert request.get("Host") == b"app1.localhost"
    assert request.get("Cookie") == b"a=1; b=2"
    assert request.get("X-Forwarded-For") == b"127.0.0.1"
    assert request.get("X-Request-Id") and request.get("X-Request-Start")
    assert request.get("Via") == b"1.1 dynomesh"
    fields = edge.log_fields()
    assert fields["protocol"] == "https" and fields["http_version"] == "2"
    assert fields["status"] == "200" and fields["dyno"] == "web.1"
    assert fields["path"] == "/hello?x=1" and fields["host"] == "app1.localhost"
    assert fields["request_id"] == request.get("X-Request-Id").decode()


async def test_an_unknown_host_is_a_404_on_its_stream_and_the_connection_goes_on(edge):
    client = await edge.connect()
    missing = await client.get("/", host="nope.localhost")
    assert missing.status == 404 and b"no such app" in bytes(missing.body).lower()
    assert edge.log_fields()["http_version"] == "2"
    assert (await client.get("/after")).status == 200
