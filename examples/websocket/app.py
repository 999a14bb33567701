"""A WebSocket echo app for dynomesh, standard library only.

GET /    a page that opens a WebSocket to /ws and shows what comes back
GET /ws  the WebSocket (RFC 6455): every text or binary message is sent back as it came,
         prefixed for text with the dyno's name (`web.1: hello`); pings get pongs.

It listens on $PORT and exits on SIGTERM, as a dyno should.
"""

import base64
import hashlib
import os
import signal
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DYNO = os.environ.get("DYNO", "web.?")
# RFC 6455 section 1.3: the accept key is SHA-1(key + this GUID), base64-encoded.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 1 << 20  # larger messages are refused with close code 1009

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA

PAGE = """<!doctype html>
<title>dynomesh WebSocket echo</title>
<form id="f"><input id="m" value="hello" autofocus> <button>send</button></form>
<pre id="log"></pre>
<script>
const log = (t) => document.getElementById("log").textContent += t + "\\n";
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.onopen = () => log("connected");
ws.onmessage = (e) => log("< " + e.data);
ws.onclose = (e) => log("closed " + e.code);
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault(); const m = document.getElementById("m"); ws.send(m.value); log("> " + m.value);
};
</script>
"""


class ProtocolError(Exception):
    """The client broke RFC 6455; `code` is the close status to send (section 7.4.1)."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code


def read_frame(read):
    """One frame from a client -> (fin, opcode, payload). Client frames must be masked."""
    head = read(2)
    if len(head) < 2:
        raise EOFError
    fin, opcode = head[0] & 0x80, head[0] & 0x0F
    if head[0] & 0x70:
        raise ProtocolError(1002, "reserved bits set without an extension")
    masked, length = head[1] & 0x80, head[1] & 0x7F
    if not masked:
        raise ProtocolError(1002, "client frames must be masked (RFC 6455 section 5.1)")
    if length == 126:
        (length,) = struct.unpack("!H", read(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", read(8))
    if opcode >= 0x8 and (length > 125 or not fin):
        raise ProtocolError(1002, "control frames are short and not fragmented")
    if length > MAX_MESSAGE:
        raise ProtocolError(1009, "message too big")
    mask = read(4)
    data = read(length)
    if len(mask) < 4 or len(data) < length:
        raise EOFError
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bool(fin), opcode, payload


def frame(opcode, payload=b""):
    """A server frame: final, unmasked (RFC 6455 section 5.1)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return head + payload


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/ws":
            return self.websocket()
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        upgrade = self.headers.get("Upgrade", "").lower()
        if upgrade != "websocket" or not key or self.headers.get("Sec-WebSocket-Version") != "13":
            body = b"this endpoint speaks WebSocket (version 13) only\n"
            self.send_response(426)
            self.send_header("Upgrade", "websocket")
            self.send_header("Sec-WebSocket-Version", "13")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        print(f"{DYNO}: websocket opened from {self.client_address[0]}", flush=True)
        self.echo()

    def echo(self):
        send = self.wfile.write
        message, kind = b"", None
        try:
            while True:
                fin, opcode, payload = read_frame(self.rfile.read)
                if opcode == PING:
                    send(frame(PONG, payload))
                elif opcode == PONG:
                    continue
                elif opcode == CLOSE:
                    send(frame(CLOSE, payload[:2]))  # echo the status code, then close
                    return
                elif opcode in (TEXT, BINARY, CONTINUATION):
                    if (opcode == CONTINUATION) != (kind is not None):
                        raise ProtocolError(1002, "unexpected continuation frame")
                    kind = kind or opcode
                    message += payload
                    if len(message) > MAX_MESSAGE:
                        raise ProtocolError(1009, "message too big")
                    if fin:
                        if kind == TEXT:
                            text = message.decode("utf-8")  # invalid UTF-8 -> 1007 below
                            send(frame(TEXT, f"{DYNO}: {text}".encode()))
                        else:
                            send(frame(BINARY, message))
                        message, kind = b"", None
                else:
                    raise ProtocolError(1002, f"unknown opcode {opcode:#x}")
                self.wfile.flush()
        except ProtocolError as error:
            send(frame(CLOSE, struct.pack("!H", error.code) + str(error).encode()[:120]))
        except UnicodeDecodeError:
            send(frame(CLOSE, struct.pack("!H", 1007) + b"text message is not UTF-8"))
        except (EOFError, ConnectionError):
            pass  # the client went away without a close frame
        finally:
            print(f"{DYNO}: websocket closed", flush=True)

    def log_message(self, format, *args):
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


def main():
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True  # open sockets do not hold up the exit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{DYNO} listening on port {port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
