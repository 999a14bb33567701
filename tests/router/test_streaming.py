"""Bodies stream both ways with back-pressure: nothing is buffered whole in the router."""

import asyncio
import hashlib
import socket

from router.flow import PEER_BUFFER_FULL
from tests.router.conftest import app_entry, table_of, wait_until
from tests.router.wire import read_head, response_bytes

BIG = 64 * 1024 * 1024  # far above every socket and transport buffer on the way
CHUNK = b"x" * (1 << 20)
BOUND = 4 * 1024 * 1024  # what the router may hold toward one peer: its buffer, not the body


def body_hash(size: int) -> str:
    digest = hashlib.sha256()
    for _ in range(size // len(CHUNK)):
        digest.update(CHUNK)
    return digest.hexdigest()


async def test_upload_is_paced_by_the_dyno_reading(dyno_factory, router_factory):
    go = asyncio.Event()

    async def slow_reader(dyno, reader, writer):
        start, _, _ = await read_head(reader)
        await go.wait()  # read nothing of the body until told
        digest, received = hashlib.sha256(), 0
        while received < BIG:
            data = await reader.read(1 << 20)
            digest.update(data)
            received += len(data)
        body = f"{received} {digest.hexdigest()}".encode()
        writer.write(response_bytes(body=body))
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=slow_reader)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", router.port))
    sock.setblocking(False)
    head = b"PUT /big HTTP/1.1\r\nHost: app1.localhost\r\nContent-Length: %d\r\n\r\n" % BIG

    async def upload():
        await loop.sock_sendall(sock, head)
        for _ in range(BIG // len(CHUNK)):
            await loop.sock_sendall(sock, CHUNK)

    sending = asyncio.create_task(upload())
    # The router stops reading the client once its buffer toward the dyno is full ...
    await wait_until(lambda: any(c.gate.reasons & PEER_BUFFER_FULL for c in router.router.clients))
    (client_conn,) = router.router.clients
    upstream = client_conn.serving.upstream
    assert upstream.transport.get_write_buffer_size() < BOUND
    assert not sending.done()  # ... so the client cannot finish sending
    go.set()
    await sending
    response = b""
    while b"\r\n\r\n" not in response or not response.endswith(body_hash(BIG).encode()):
        data = await loop.sock_recv(sock, 65536)
        assert data, f"connection closed early: {response!r}"
        response += data
    assert f"{BIG} {body_hash(BIG)}".encode() in response
    sock.close()


async def test_download_is_paced_by_the_client_reading(dyno_factory, router_factory):
    written = []

    async def big_response(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        for _ in range(BIG // len(CHUNK)):
            writer.write(CHUNK)
            await writer.drain()
            written.append(len(CHUNK))
        await reader.read()

    dyno = await dyno_factory(handler=big_response)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", router.port))
    sock.setblocking(False)
    await loop.sock_sendall(sock, b"GET /big HTTP/1.1\r\nHost: app1.localhost\r\n\r\n")
    # Nobody reads: the router pauses reading the dyno once the client's buffer is full.
    await wait_until(lambda: any(
        c.serving is not None and c.serving.upstream is not None
        and c.serving.upstream.gate.reasons & PEER_BUFFER_FULL for c in router.router.clients))
    (client_conn,) = router.router.clients
    assert client_conn.transport.get_write_buffer_size() < BOUND
    assert sum(written) < BIG
    digest, received, data = hashlib.sha256(), 0, b""
    while b"\r\n\r\n" not in data:
        data += await loop.sock_recv(sock, 65536)
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK")
    digest.update(body)
    received = len(body)
    while received < BIG:
        data = await loop.sock_recv(sock, 1 << 20)
        assert data
        digest.update(data)
        received += len(data)
    assert received == BIG and digest.hexdigest() == body_hash(BIG)
    assert router.log_fields()["bytes"] == str(BIG)
    sock.close()
