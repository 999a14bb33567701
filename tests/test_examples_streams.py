"""examples/websocket and examples/sse run as dynos would: on $PORT, naming $DYNO, stopping on
SIGTERM; spoken to on the wire (RFC 6455 frames, text/event-stream)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from contextlib import contextmanager

from tests.conftest import REPO_ROOT, free_port

EXAMPLES = REPO_ROOT / "examples"


@contextmanager
def dyno(example: str, **env: str):
    port = free_port()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=EXAMPLES / example,
                               env={**os.environ, "PORT": str(port), "DYNO": "web.3",
                                    "PYTHONUNBUFFERED": "1", **env},
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == f"web.3 listening on port {port}"
        yield port
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "connection closed before the response head"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", (0x80 if fin else 0) | opcode, 0x80 | len(payload)) + mask + masked


def server_frame(sock: socket.socket, buffered: bytearray) -> tuple[int, bytes]:
    while len(buffered) < 2 or len(buffered) < 2 + (buffered[1] & 0x7F):
        chunk = sock.recv(4096)
        assert chunk, "connection closed before a frame"
        buffered += chunk
    opcode, length = buffered[0] & 0x0F, buffered[1] & 0x7F
    assert buffered[1] & 0x80 == 0 and length < 126  # unmasked, short in these tests
    payload = bytes(buffered[2:2 + length])
    del buffered[:2 + length]
    return opcode, payload


def test_websocket_example_handshakes_echoes_pongs_and_closes():
    with dyno("websocket") as port, socket.create_connection(("127.0.0.1", port), 10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: ws.localhost\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        expected = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        assert b"Sec-WebSocket-Accept: " + expected in head
        buffered = bytearray(rest)
        sock.sendall(client_frame(0x1, b"hel", fin=False) + client_frame(0x0, b"lo"))
        assert server_frame(sock, buffered) == (0x1, b"web.3: hello")
        sock.sendall(client_frame(0x2, b"\x00\xff"))
        assert server_frame(sock, buffered) == (0x2, b"\x00\xff")
        sock.sendall(client_frame(0x9, b"are you there"))
        assert server_frame(sock, buffered) == (0xA, b"are you there")
        sock.sendall(client_frame(0x8, struct.pack("!H", 1000)))
        assert server_frame(sock, buffered) == (0x8, struct.pack("!H", 1000))


def test_websocket_example_refuses_unmasked_frames_and_plain_requests():
    with dyno("websocket") as port:
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _ = read_head(sock)
            assert head.startswith(b"HTTP/1.1 426 ")
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
                         b"Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            _, rest = read_head(sock)
            sock.sendall(struct.pack("!BB", 0x81, 2) + b"hi")  # not masked
            opcode, payload = server_frame(sock, bytearray(rest))
            assert opcode == 0x8 and struct.unpack("!H", payload[:2]) == (1002,)


def read_events(sock: socket.socket, count: int) -> list[dict[str, str]]:
    """Parse `count` events out of a chunked text/event-stream (after the head)."""
    data = b""
    events: list[dict[str, str]] = []
    head, data = read_head(sock)
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Type: text/event-stream" in head
    text = ""
    while len(events) < count:
        while b"\r\n" not in data:
            data += sock.recv(4096)
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        while len(data) < size + 2:
            data += sock.recv(4096)
        text += data[:size].decode()
        data = data[size + 2:]
        while "\n\n" in text:
            block, _, text = text.partition("\n\n")
            fields = dict(line.split(": ", 1) for line in block.splitlines())
            if "event" in fields:
                events.append(fields)
    return events


def test_sse_example_streams_numbered_ticks_and_resumes_after_the_last_event_id():
    with dyno("sse", TICK_SECONDS="0.05") as port:
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: sse.localhost\r\n\r\n")
            first, second = read_events(sock, 2)
        assert (first["id"], first["event"]) == ("1", "tick") and second["id"] == "2"
        assert json.loads(first["data"])["dyno"] == "web.3"
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: sse.localhost\r\nLast-Event-ID: 41\r\n\r\n")
            (resumed,) = read_events(sock, 1)
        assert resumed["id"] == "42" and json.loads(resumed["data"])["n"] == 42


def test_the_streaming_examples_have_a_web_procfile():
    from controlplane import procfile

    for example in ("websocket", "sse"):
        assert procfile.parse((EXAMPLES / example / "Procfile").read_text()) == {"web": "python3 app.py"}
