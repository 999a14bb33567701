"""A tiny web app for dynomesh: answers every request with its greeting and dyno name.

It listens on $PORT (the dyno manager picks it) and shows $DYNO (e.g. web.2) and $GREETING
(a config var: `dynomesh config:set GREETING=hi --app hello`). Standard library only.
"""

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = os.environ.get("GREETING", "Hello")
DYNO = os.environ.get("DYNO", "web.?")


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{GREETING} from {DYNO}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        # One line per request on stdout: the dyno manager turns it into app[web.N] log lines.
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


def main():
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Hello)
    # SIGTERM is how a dyno is asked to stop: leave serve_forever() and exit 0. (Calling
    # server.shutdown() here would deadlock: it waits for the loop this handler interrupted.)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{DYNO} listening on port {port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print(f"{DYNO} stopped", flush=True)


if __name__ == "__main__":
    main()
