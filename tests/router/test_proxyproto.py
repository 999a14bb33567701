"""The PROXY protocol: the sans-IO parser, and a router behind a balancer that speaks it."""

import socket
import struct

import pytest

from router.config import parse_networks
from router.proxyproto import ProxyHeader, ProxyProtocolError, parse_proxy_header
from tests.router.conftest import app_entry, table_of
from tests.router.wire import build_request, read_response

V2 = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command=0x21, family=0x11, addresses=None, tlvs=b""):
    if addresses is None:
        addresses = socket.inet_aton("203.0.113.7") + socket.inet_aton("10.0.0.1") + \
            struct.pack("!HH", 51000, 443)
    body = addresses + tlvs
    return V2 + bytes([command, family]) + struct.pack("!H", len(body)) + body


def test_v1_tcp4_and_tcp6_name_the_client():
    header = parse_proxy_header(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nGET /")
    assert header == ProxyHeader(43, ("203.0.113.7", 51000), ("10.0.0.1", 443))
    header = parse_proxy_header(b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n")
    assert header.source == ("2001:db8::7", 51000)


def test_v1_unknown_keeps_the_connections_own_peer():
    assert parse_proxy_header(b"PROXY UNKNOWN\r\n") == ProxyHeader(15, None)
    assert parse_proxy_header(b"PROXY UNKNOWN ffff:f...f:ffff 1 2\r\nX").length == 35


def test_v2_proxy_local_ipv6_and_tlvs():
    assert parse_proxy_header(v2()).source == ("203.0.113.7", 51000)
    six = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + \
        socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 1, 2)
    assert parse_proxy_header(v2(family=0x21, addresses=six)).source == ("2001:db8::7", 1)
    local = v2(command=0x20, family=0x00, addresses=b"")
    assert parse_proxy_header(local) == ProxyHeader(16, None)
    with_tlv = v2(tlvs=b"\x04\x00\x03abc")
    assert parse_proxy_header(with_tlv + b"GET").length == len(with_tlv)


@pytest.mark.parametrize("partial", [b"", b"PRO", b"PROXY TCP4 1.2.3.4", V2[:5], v2()[:20]])
def test_an_incomplete_header_asks_for_more(partial):
    assert parse_proxy_header(partial) is None


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", b"PROXY TCP4 ::1 ::1 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n", b"PROXY TCP4 a.b.c.d 5.6.7.8 1 2\r\n",
    b"PROXY " + b"x" * 200, V2 + b"\x31\x11\x00\x0c" + b"\x00" * 12,
    v2(addresses=b"\x00" * 4),
])
def test_anything_else_is_refused(data):
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(data)


async def send_raw(port: int, data: bytes, one_byte_at_a_time: bool = False):
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if one_byte_at_a_time:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
    else:
        writer.write(data)
    response = await read_response(reader)
    writer.close()
    return response


@pytest.mark.parametrize("bytewise", [False, True], ids=["one write", "byte per write"])
async def test_the_proxy_header_names_the_client_for_the_dyno_and_the_log(
        dyno_factory, router_factory, bytewise):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])),
                                  proxy_protocol=True)
    request = build_request(host="app1.localhost")
    response = await send_raw(router.port, b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n"
                              + request, bytewise)
    assert response.status == 200
    assert dyno.requests[0].get("X-Forwarded-For") == b"203.0.113.7"
    assert router.log_fields()["fwd"] == "203.0.113.7"
    response = await send_raw(router.port, v2() + request)
    assert response.status == 200 and dyno.requests[1].get("X-Forwarded-For") == b"203.0.113.7"
    response = await send_raw(router.port, v2(command=0x20, family=0, addresses=b"") + request)
    assert dyno.requests[2].get("X-Forwarded-For") == b"127.0.0.1"  # LOCAL: the peer itself


async def test_a_connection_without_the_proxy_header_is_refused(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])),
                                  proxy_protocol=True)
    response = await send_raw(router.port, build_request(host="app1.localhost"))
    assert response.status == 400 and b"PROXY protocol" in response.body
    assert dyno.requests == []
    assert router.log_fields()["desc"] == "Bad PROXY protocol header"


async def test_a_trusted_balancer_keeps_its_forwarded_headers(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])),
                                  trusted_proxies=parse_networks("127.0.0.0/8", "x"))
    response = await send_raw(router.port, build_request(host="app1.localhost", headers=[
        ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443")]))
    assert response.status == 200
    seen = dyno.requests[0]
    assert seen.all("X-Forwarded-For") == [b"203.0.113.7"]  # the balancer is not appended
    assert seen.all("X-Forwarded-Proto") == [b"https"] and seen.all("X-Forwarded-Port") == [b"443"]
    await send_raw(router.port, build_request(host="app1.localhost"))  # a health check
    seen = dyno.requests[1]
    assert seen.all("X-Forwarded-For") == [b"127.0.0.1"]
    assert seen.all("X-Forwarded-Proto") == [b"http"]
    assert seen.all("X-Forwarded-Port") == [str(router.port).encode()]


async def test_an_untrusted_peer_cannot_set_the_forwarded_headers(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])),
                                  trusted_proxies=parse_networks("10.0.0.0/8", "x"))
    await send_raw(router.port, build_request(host="app1.localhost", headers=[
        ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]))
    seen = dyno.requests[0]
    assert seen.all("X-Forwarded-For") == [b"203.0.113.7, 127.0.0.1"]
    assert seen.all("X-Forwarded-Proto") == [b"http"]
