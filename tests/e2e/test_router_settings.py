"""Per-app router settings through `dynomesh up` (`config:router`): the request timeout, the
largest request body and the running health check, each reaching the router or the dyno
manager through the feeds. One app and one deploy for all three (the platform is the
session's, tests/e2e/conftest.py); every wait polls real state with a bound."""

from __future__ import annotations

import http.client
import json
import re

import pytest

from tests.e2e.harness import h_code, poll, web_up, write_app

pytestmark = pytest.mark.timeout(240)

# A web app that can be slow, counts the bodies it was sent, and fails its health check when
# asked to (on its own address: a dyno out of the routers' tables is reached directly).
WEB = '''
import json, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

DYNO = os.environ["DYNO"]
posted = {}
sick = []


class App(BaseHTTPRequestHandler):
    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/slow":
            time.sleep(float(query["s"][0]))
        if url.path == "/health":
            return self.answer(503 if sick else 200, "sick" if sick else "ok")
        if url.path == "/sicken":
            sick.append(1)
        if url.path == "/heal":
            sick.clear()
        if url.path == "/posted":
            return self.answer(200, json.dumps(posted))
        self.answer(200, "from " + DYNO)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        posted[self.path] = posted.get(self.path, 0) + 1
        self.answer(200, "took %d bytes" % length)

    def log_message(self, format, *args):
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), App).serve_forever()
'''


def request(platform, app: str, method: str, path: str, body: bytes | None = None,
            address: str | None = None) -> tuple[int, bytes]:
    """Through the router, or straight to a dyno's `address`."""
    host, port = (address.rsplit(":", 1) if address
                  else (platform.router.address, platform.router.port))
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body,
                           headers={"Host": platform.router.host(app)})
        response = connection.getresponse()
        return response.status, response.read()
    except (ConnectionError, http.client.HTTPException):
        return 0, b""  # the router cut the connection (a body it refused mid-way)
    finally:
        connection.close()


def router_settings(platform, app: str, *flags: str) -> dict:
    return json.loads(platform.cli.ok("config:router", "--app", app, "--json", *flags))


def test_request_timeout_body_limit_and_health_check_per_app(platform, make_app, workdir):
    app = make_app("e2e-routercfg")
    source = write_app(workdir / "routercfg", {"Procfile": "web: python3 web.py\n",
                                              "web.py": WEB})
    platform.cli.ok("deploy", str(source), "--app", app)
    poll(lambda: web_up(platform.api.dynos(app), 1), "web.1 up")

    # Request timeout: 1 s makes a 2 s request an H12; 10 s lets it through.
    assert router_settings(platform, app, "--request-timeout", "1")["request_timeout"] == 1
    poll(lambda: (lambda r: r[0] == 503 and h_code(r[1]) == "H12")(
        request(platform, app, "GET", "/slow?s=2")), "H12 after the app's 1 s")
    router_settings(platform, app, "--request-timeout", "10")
    poll(lambda: request(platform, app, "GET", "/slow?s=2")[0] == 200,
         "a 2 s request answered under the app's 10 s")
    refused = platform.cli.run("config:router", "--app", app, "--request-timeout", "7200")
    assert refused.returncode != 0 and "from 1 to 3600 seconds" in refused.stderr

    # Body limit: over it, 413 from the router (H25) and the dyno never sees it.
    settings = router_settings(platform, app, "--max-body-size", "1KB")
    assert settings["max_body_bytes"] == 1024
    poll(lambda: request(platform, app, "POST", "/probe", b"x" * 2000)[0] == 413,
         "413 once the router has the app's 1 KB limit")
    status, page = request(platform, app, "POST", "/upload", b"x" * 2000)
    assert status == 413 and h_code(page) == "H25"
    assert request(platform, app, "POST", "/upload", b"x" * 1000) == (200, b"took 1000 bytes")
    assert json.loads(request(platform, app, "GET", "/posted")[1]).get("/upload") == 1
    poll(lambda: re.search(r'code=H25 desc="Request body too large".*status=413',
                           platform.cli.ok("logs", "--app", app, "-n", "200")),
         "the router's H25 line in the app's log")
    info = platform.cli.ok("apps:info", "--app", app)
    assert "request timeout 10 s, max body size 1 KB" in info, info
    shown = platform.cli.ok("config:router", "--app", app)
    assert re.search(r"^Max body size +1 KB$", shown, re.M), shown
    assert re.search(r"^Health check +none$", shown, re.M), shown

    # Health check: a dyno failing it twice in a row leaves the table, `ps` says why, and it
    # comes back once it passes.
    router_settings(platform, app, "--health-check-path", "/health",
                    "--health-check-interval", "1", "--health-check-failures", "2")
    platform.cli.ok("ps:scale", "web=2", "--app", app)
    dynos = poll(lambda: (lambda d: d if web_up(d, 2) and all(
        x["release"]["version"] == 1 for x in d) else None)(platform.api.dynos(app)),
        "2 web dynos up with the health check")
    sick, well = sorted((d for d in dynos if d["type"] == "web"), key=lambda d: d["name"])
    assert request(platform, app, "GET", "/sicken", address=sick["address"])[0] == 200
    reason = poll(lambda: next((d["unhealthy"] for d in platform.api.dynos(app)
                                if d["name"] == sick["name"] and d["unhealthy"]), None),
                  f"{sick['name']} reported unhealthy")
    assert reason == "GET /health → 503 ×2"
    ps = platform.cli.ok("ps", "--app", app)
    assert re.search(rf"^{sick['name']} +up \(unhealthy: GET /health → 503 ×2\)", ps, re.M), ps
    poll(lambda: all(request(platform, app, "GET", "/")[1] == f"from {well['name']}".encode()
                     for _ in range(6)), f"only {well['name']} answering")
    request(platform, app, "GET", "/heal", address=sick["address"])
    poll(lambda: request(platform, app, "GET", "/")[1] == f"from {sick['name']}".encode(),
         f"{sick['name']} routed again after a passing check")
    assert not any(d["unhealthy"] for d in platform.api.dynos(app))
    log = platform.cli.ok("logs", "--app", app, "-n", "300")
    assert "Health check failed: GET /health → 503 ×2" in log, log
    assert "Health check passed; back in the routers' tables" in log, log
