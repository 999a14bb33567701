"""Upgrades: a 101 turns the connection into a byte-transparent tunnel (WebSocket included);
any other answer is ordinary HTTP."""

import asyncio
import base64
import hashlib
import os
import struct

from tests.router.conftest import app_entry, table_of, wait_until
from tests.router.wire import build_request, read_head, read_response, response_bytes

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    """One RFC 6455 frame (FIN set); clients mask, servers do not."""
    head = bytes([0x80 | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", await reader.readexactly(8))[0]
    key = await reader.readexactly(4) if second & 0x80 else None
    payload = await reader.readexactly(size)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


async def websocket_echo(dyno, reader, writer):
    """A tiny WebSocket server: the handshake, then every frame echoed until a close."""
    request = await dyno.next_request(reader)
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                 % accept_key(request.get("Sec-WebSocket-Key")))
    while True:
        opcode, payload = await read_frame(reader)
        writer.write(frame(opcode, payload, mask=False))
        await writer.drain()
        if opcode == 0x8:  # close: echoed, then the connection ends
            return


def handshake(key: bytes = b"dGhlIHNhbXBsZSBub25jZQ==") -> bytes:
    return build_request("GET", "/chat", "app1.localhost", [
        ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", key.decode())])


async def test_websocket_messages_flow_through_a_tunnel(dyno_factory, router_factory):
    dyno = await dyno_factory(handler=websocket_echo)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(handshake())
    start, headers, _ = await read_head(client.reader)
    assert start == b"HTTP/1.1 101 Switching Protocols"
    fields = {name.lower(): value for name, value in headers}
    assert fields[b"sec-websocket-accept"] == accept_key(b"dGhlIHNhbXBsZSBub25jZQ==")
    assert fields[b"upgrade"] == b"websocket" and fields[b"connection"] == b"Upgrade"
    (seen,) = dyno.requests
    assert seen.get("Upgrade") == b"websocket" and seen.get("Connection") == b"Upgrade"
    assert seen.get("X-Forwarded-For") == b"127.0.0.1" and seen.get("X-Request-Id")
    for message in (b"hello", b"x" * 70000, "é".encode()):
        await client.send(frame(0x1, message, mask=True))
        assert await read_frame(client.reader) == (0x1, message)
    assert len(router.router.tunnels) == 1 and not router.router.clients
    fields = router.log_fields()
    assert fields["status"] == "101" and fields["path"] == "/chat" and fields["dyno"] == "web.1"
    await client.send(frame(0x8, b"\x03\xe8", mask=True))
    assert await read_frame(client.reader) == (0x8, b"\x03\xe8")
    assert await client.closed()  # the dyno closed: so does the client's side
    await wait_until(lambda: not router.router.tunnels)
    metrics = router.router.metrics.apps["app1"]
    assert metrics.statuses == {101: 1} and metrics.in_flight == 0


async def test_the_client_closing_closes_the_dyno_side(dyno_factory, router_factory):
    closed = asyncio.Event()

    async def switch_then_wait(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: chat\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        assert await reader.read() == b""
        closed.set()

    dyno = await dyno_factory(handler=switch_then_wait)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(build_request("GET", "/", "app1.localhost",
                                    [("Connection", "upgrade"), ("Upgrade", "chat")]))
    assert (await read_head(client.reader))[0].startswith(b"HTTP/1.1 101")
    await client.close()
    await closed.wait()
    await wait_until(lambda: not router.router.tunnels)


async def test_bytes_around_the_switch_are_not_lost(dyno_factory, router_factory):
    """The client's bytes sent right behind its request, and the dyno's right behind its 101,
    arrive on the other side once the tunnel is up."""
    async def greet(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\n"
                     b"Connection: Upgrade\r\n\r\nHELLO FROM DYNO\n")
        await writer.drain()
        line = await reader.readline()
        writer.write(b"got " + line)
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=greet)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(build_request("GET", "/", "app1.localhost",
                                    [("Connection", "Upgrade"), ("Upgrade", "raw")])
                      + b"EARLY FROM CLIENT\n")
    await read_head(client.reader)
    assert await client.reader.readline() == b"HELLO FROM DYNO\n"
    assert await client.reader.readline() == b"got EARLY FROM CLIENT\n"
    await client.close()


async def test_a_silent_tunnel_ends_after_the_idle_timeout(dyno_factory, router_factory):
    dyno = await dyno_factory(handler=websocket_echo)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])), idle_timeout=0.3)
    client = await router.client()
    await client.send(handshake())
    await read_head(client.reader)
    await client.send(frame(0x1, b"still here", mask=True))
    assert await read_frame(client.reader) == (0x1, b"still here")
    assert await client.closed()  # then nothing either way: closed
    assert not router.router.tunnels


async def test_a_non_101_answer_is_ordinary_http_and_the_connection_goes_on(dyno_factory,
                                                                           router_factory):
    async def refuse_upgrades(dyno, reader, writer):
        while True:
            request = await dyno.next_request(reader)
            status = b"426 Upgrade Required" if request.get("Upgrade") else b"200 OK"
            writer.write(b"HTTP/1.1 %s\r\nContent-Length: 2\r\n\r\nno" % status)
            await writer.drain()

    dyno = await dyno_factory(handler=refuse_upgrades)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(handshake())
    response = await read_response(client.reader)
    assert response.status == 426 and response.body == b"no"
    again = await client.request(host="app1.localhost")
    assert again.status == 200 and [r.get("Upgrade") for r in dyno.requests] == [b"websocket", None]
    assert dyno.connections == 1
    await client.close()


async def test_bytes_sent_ahead_of_a_refused_upgrade_end_the_connection(dyno_factory,
                                                                        router_factory):
    async def refuse(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(response_bytes(426, b"no", reason="Upgrade Required"))
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=refuse)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(handshake() + build_request("GET", "/smuggled", "app1.localhost"))
    response = await read_response(client.reader)
    assert response.status == 426 and await client.closed()
    assert [r.target for r in dyno.requests] == [b"/chat"]


async def test_a_101_nobody_asked_for_is_h17(dyno_factory, router_factory):
    async def switch(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade"
                     b"\r\n\r\nraw bytes")
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=switch)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request(host="app1.localhost")
    assert response.status == 502 and router.log_fields()["code"] == "H17"
    await client.close()


async def test_a_big_stream_crosses_the_tunnel_intact(dyno_factory, router_factory):
    size = 8 * 1024 * 1024

    async def sink(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        digest, received = hashlib.sha256(), 0
        while received < size:
            data = await reader.read(1 << 16)
            digest.update(data)
            received += len(data)
        writer.write(digest.hexdigest().encode())
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=sink)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(build_request("GET", "/", "app1.localhost",
                                    [("Connection", "Upgrade"), ("Upgrade", "raw")]))
    await read_head(client.reader)
    payload = os.urandom(size)
    await client.send(payload)
    assert await client.reader.readexactly(64) == hashlib.sha256(payload).hexdigest().encode()
    await client.close()
