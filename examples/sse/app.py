"""A server-sent events app for dynomesh, standard library only.

GET /        a page that follows /events with an EventSource
GET /events  an endless text/event-stream: one `tick` event every $TICK_SECONDS (default 1)
             naming the dyno and counting; a client that reconnects with Last-Event-ID
             continues the count (the HTML Living Standard's "server-sent events").

It listens on $PORT and exits on SIGTERM, as a dyno should.
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DYNO = os.environ.get("DYNO", "web.?")
TICK = float(os.environ.get("TICK_SECONDS", "1"))
stopping = threading.Event()

PAGE = """<!doctype html>
<title>dynomesh server-sent events</title>
<pre id="log"></pre>
<script>
const events = new EventSource("/events");
events.addEventListener("tick", (e) => {
  document.getElementById("log").textContent += e.lastEventId + " " + e.data + "\\n";
});
</script>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/events":
            return self.events()
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def events(self):
        try:
            number = int(self.headers.get("Last-Event-ID", "0"))
        except ValueError:
            number = 0
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")  # an endless body, one chunk per event
        self.end_headers()
        self.close_connection = True
        self.chunk("retry: 2000\n\n")  # how long a browser waits before reconnecting
        try:
            while not stopping.wait(TICK if number else 0):
                number += 1
                data = json.dumps({"dyno": DYNO, "n": number, "at": round(time.time(), 3)})
                self.chunk(f"id: {number}\nevent: tick\ndata: {data}\n\n")
            self.wfile.write(b"0\r\n\r\n")  # the end of the stream when the dyno stops
        except ConnectionError:
            pass  # the client left

    def chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def log_message(self, format, *args):
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


def main():
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True

    def stop(*_):
        stopping.set()  # streams stop ticking; the process leaves without waiting for them
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"{DYNO} listening on port {port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
