"""Log output under pressure, slugs over HTTP, and the admin endpoints."""

from __future__ import annotations

import functools
import http.server
import json
import re
import signal
import threading

import pytest



def test_a_slow_stdout_reader_never_blocks_a_dyno_lines_are_dropped_counted_and_reported(harness):
    slug = harness.slugs.make("web: python chatty.py\n")
    harness.write(harness.dyno("web.1", slug, env={"LINES": "30000"}))
    # Nobody reads the agent's stdout for now: the pipe fills, then the agent's 64 KB buffer.
    agent = harness.start(flags={"--log-buffer": "65536"}, read_stdout=False)
    # The dyno wrote ~6 MB and still got to bind its port: it was never blocked.
    agent.wait_until(lambda: agent.dynos().get("hello web.1", {}).get("state") == "up", what="web.1 up")
    dropped = agent.wait_until(lambda: agent.metric("dynomgr_log_lines_dropped_total"), what="drops")
    assert dropped > 1000
    agent.start_reading_stdout()
    notice = agent.wait_for(r"dynomgr\[logs\]: Dropped (\d+) log lines: the reader of this output was too slow")
    assert int(notice.group(1)) == agent.metric("dynomgr_log_lines_dropped_total")
    # Once the reader keeps up, lines flow again.
    assert agent.count(r"Dropped \d+ log lines") == 1


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def slug_server(harness):
    handler = functools.partial(CountingHandler, directory=str(harness.root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_slugs_over_http_are_fetched_once_per_release_and_a_404_is_r17(harness, slug_server):
    slug = harness.slugs.make("web: python web.py\n")
    base = f"http://127.0.0.1:{slug_server.server_address[1]}"
    over_http = dict(slug, url=base + "/" + slug["url"].rsplit("/", 1)[1])
    missing = {"url": base + "/nope.tgz", "sha256": "2" * 64}
    harness.write(harness.dyno("web.1", over_http), harness.dyno("web.2", over_http), harness.dyno("web.3", missing))
    agent = harness.start(flags={"--restart-base": "30", "--restart-cap": "30"})
    agent.wait_up("web.1")
    agent.wait_up("web.2")
    agent.wait_for(r"hello heroku\[web\.3\]: Error R17 \(Checksum error\) -> slug http://127\.0\.0\.1:\d+/nope\.tgz not found \(HTTP 404\)$")
    assert slug_server.requests.count(over_http["url"].replace(base, "")) == 1


def test_healthz_and_metrics_describe_the_dynos(harness):
    good = harness.slugs.make("web: python web.py\nworker: python worker.py\ncrash: python crash.py\n")
    harness.write(harness.dyno("web.1", good), harness.dyno("worker.1", good), harness.dyno("crash.1", good))
    agent = harness.start(flags={"--restart-base": "0.1", "--restart-cap": "0.1"})
    agent.wait_up("web.1")
    agent.wait_for(r"worker\.1\]: State changed from starting to up")
    agent.wait_until(lambda: agent.dynos()["hello crash.1"]["restarts"] >= 2, what="two restarts")

    status, body = agent.get("/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok"
    assert health["dynos"]["up"] >= 2

    _, text = agent.get("/metrics")
    metrics = text.decode()
    assert re.search(r'^dynomgr_dynos\{state="up"\} [23]\.0$', metrics, re.M)
    assert re.search(r'^dynomgr_dyno_restarts_total\{app="hello",type="crash"\} [2-9]', metrics, re.M)
    assert re.search(r"^dynomgr_dyno_boot_seconds_count [2-9]", metrics, re.M)
    assert re.search(r"^dynomgr_log_lines_dropped_total 0\.0$", metrics, re.M)
    assert re.search(r'^dynomgr_log_lines_total\{source="app"\} \d', metrics, re.M)
    assert re.search(r'^dynomgr_dyno_memory_quota_bytes\{app="hello",dyno="web\.1"\} 5\.36870912e\+08$', metrics, re.M)

    dynos = agent.dynos()
    assert dynos["hello web.1"]["address"].startswith("127.0.0.1:")
    assert dynos["hello worker.1"]["address"] is None


def test_healthz_says_draining_while_dynos_stop(harness):
    slug = harness.slugs.make("worker: python stubborn.py\n")
    harness.write(harness.dyno("worker.1", slug))
    agent = harness.start(flags={"--stop-timeout": "30"})
    agent.wait_for(r"app\[worker\.1\]: stubborn pid=")
    agent.signal(signal.SIGTERM)
    agent.wait_for(r"app\[worker\.1\]: ignoring SIGTERM")
    status, body = agent.get("/healthz")
    assert status == 503 and json.loads(body)["status"] == "draining"
    agent.proc.kill()  # the harness's cleanup stops the stubborn dyno
