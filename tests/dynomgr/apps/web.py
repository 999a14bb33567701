"""A stdlib web dyno: answers with what it sees of its environment.

GET /            JSON: DYNO, PORT, pid, uid, cwd, HOME, every environment variable name
GET /health      503 for the first $HEALTHY_AFTER requests, then 200
"""

import http.server
import json
import os

health_requests = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global health_requests
        if self.path == "/health":
            health_requests += 1
            print(f"health check {health_requests}", flush=True)
            ready = health_requests > int(os.environ.get("HEALTHY_AFTER", "0"))
            self._send(200 if ready else 503, {"ready": ready})
            return
        self._send(200, {
            "dyno": os.environ.get("DYNO"),
            "port": os.environ.get("PORT"),
            "pid": os.getpid(),
            "uid": os.getuid(),
            "cwd": os.getcwd(),
            "home": os.environ.get("HOME"),
            "greeting": os.environ.get("GREETING"),
            "env": sorted(os.environ),
        })

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)
print(f"listening on {os.environ['PORT']} pid={os.getpid()}", flush=True)
server.serve_forever()
