"""The whole platform through `dynomesh up`, the `dynomesh` CLI and the router, as a user
drives it: deploy, scale, H14/H80, config vars, crashes, rollbacks, rollouts under load,
ps:restart/ps:stop, and streaming examples.

One `dynomesh up` serves the module (conftest.py); each test creates its own app and destroys it.
Every wait polls real state (the API, the router, output lines) with a bound.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket

import pytest

from tests.e2e.harness import (LoadLoop, children, copy_example, h_code, hello_variant, poll,
                               web_up, write_app)

pytestmark = pytest.mark.timeout(240)


def deployed(platform, app: str, source, *more: str) -> int:
    """Deploy `source` to `app`; -> the release version."""
    out = platform.cli.ok("deploy", str(source), "--app", app, *more)
    return int(re.search(r"Released v(\d+) of ", out).group(1))


def wait_web(platform, app: str, count: int, release: int | None = None,
             timeout: float = 60.0) -> list[dict]:
    def check():
        dynos = platform.api.dynos(app)
        return dynos if web_up(dynos, count, release) else None

    what = f"{count} web dynos of {app} up" + (f" on v{release}" if release else "")
    return poll(check, what, timeout=timeout)


def dyno_of(body: str) -> str:
    """`web.2` out of hello's `... from web.2`."""
    return re.search(r"from (web\.\d+)", body).group(1)


def test_deploy_and_scale_to_three_answers_from_three_distinct_dynos(platform, make_app,
                                                                      workdir):
    app = make_app("e2e-hello")
    assert platform.router.get(app).status == 502  # created, nothing deployed: H81
    assert deployed(platform, app, copy_example("hello", workdir)) == 1
    scaled = platform.cli.ok("ps:scale", "web=3", "worker=1", "--app", app)
    assert "web at 3" in scaled and "worker at 1" in scaled
    wait_web(platform, app, 3, release=1)
    poll(lambda: any(d["name"] == "worker.1" and d["state"] == "up"
                     for d in platform.api.dynos(app)), "worker.1 up")

    ps = platform.cli.ok("ps", "--app", app)
    for name in ("web.1", "web.2", "web.3", "worker.1"):
        assert re.search(rf"^{re.escape(name)} +up +.* v1 +\S+ +(127\.0\.0\.1:\d+|-) +0$", ps,
                         re.M), ps
    seen = set()
    for _ in range(300):  # P2C picks among idle dynos at random: all three answer soon
        response = platform.router.get(app)
        assert response.status == 200, response.text
        assert response.text.startswith("Hello from web.")
        seen.add(dyno_of(response.text))
        if len(seen) == 3:
            break
    assert seen == {"web.1", "web.2", "web.3"}

    # Custom domains, a wildcard among them, route to the app too; removed ones stop routing.
    platform.cli.ok("domains:add", "www.e2e-hello.test", "--app", app)
    platform.cli.ok("domains:add", "*.e2e-wild.test", "--app", app)
    for host in ("www.e2e-hello.test", "anything.e2e-wild.test"):
        response = poll(lambda: platform.router.answers_host(host, lambda r: r.status == 200),
                        f"an answer for {host}")
        assert response.text.startswith("Hello from web.")
    platform.cli.ok("domains:remove", "www.e2e-hello.test", "--app", app)
    poll(lambda: platform.router.answers_host("www.e2e-hello.test", lambda r: r.status == 404),
         "www.e2e-hello.test to be unknown again")


def test_scaling_down_under_load_takes_dynos_out_before_stopping_them(platform, make_app,
                                                                      workdir):
    app = make_app("e2e-scaledown")
    deployed(platform, app, copy_example("hello", workdir))
    platform.cli.ok("ps:scale", "web=3", "--app", app)
    wait_web(platform, app, 3)
    with LoadLoop(platform.router, app, clients=2, max_requests=40000, max_seconds=90) as load:
        load.wait_for_body(lambda body: "web." in body, count=20)
        platform.cli.ok("ps:scale", "web=1", "--app", app)
        poll(lambda: len(platform.agent_dynos(app)) == 1, "web.2 and web.3 stopped")
        served = load.result.requests
        load.wait_for_body(lambda body: "web." in body, count=served + 20)
    assert load.result.failures == 0, dict(load.result.outcomes)
    assert {dyno_of(body) for body in load.result.bodies} == {"web.1", "web.2", "web.3"}
    assert [d["name"] for d in platform.api.dynos(app)] == ["web.1"]


def test_scaling_web_to_zero_answers_h14_and_maintenance_answers_h80(platform, make_app,
                                                                      workdir):
    app = make_app("e2e-codes")
    deployed(platform, app, copy_example("hello", workdir))
    platform.cli.ok("ps:scale", "web=1", "--app", app)
    wait_web(platform, app, 1)
    assert platform.router.get(app).status == 200

    mark = platform.up.mark()
    platform.cli.ok("ps:scale", "web=0", "--app", app)
    h14 = poll(lambda: platform.router.answers(app, lambda r: r.status != 200),
               "the router to stop answering from web.1")
    assert (h14.status, h_code(h14.body)) == (503, "H14")
    platform.up.wait_for(rf"router +\| .*at=error code=H14 desc=\"No web dynos running\" "
                         rf".*host={app}\.localhost:\d+ .*status=503", after=mark)
    poll(lambda: not platform.agent_dynos(app), "web.1 to stop")

    platform.cli.ok("ps:scale", "web=1", "--app", app)
    poll(lambda: platform.router.answers(app, lambda r: r.status == 200), "web.1 back")
    mark = platform.up.mark()
    assert "is on" in platform.cli.ok("maintenance:on", "--app", app)
    h80 = poll(lambda: platform.router.answers(app, lambda r: r.status != 200),
               "the maintenance page")
    assert (h80.status, h_code(h80.body)) == (503, "H80")
    assert b"maintenance" in h80.body
    platform.up.wait_for(rf"router +\| .*at=info code=H80 desc=\"Maintenance mode\" "
                         rf".*host={app}\.localhost", after=mark)
    platform.cli.ok("maintenance:off", "--app", app)
    poll(lambda: platform.router.answers(app, lambda r: r.status == 200), "the app again")


def test_config_set_reaches_the_web_and_worker_dynos(platform, make_app, workdir):
    app = make_app("e2e-config")
    deployed(platform, app, copy_example("hello", workdir))
    platform.cli.ok("ps:scale", "web=2", "worker=1", "--app", app)
    wait_web(platform, app, 2, release=1)
    assert platform.router.get(app).text.startswith("Hello from")

    mark = platform.up.mark()
    out = platform.cli.ok("config:set", "GREETING=Howdy", "--app", app)
    assert "v2" in out
    wait_web(platform, app, 2, release=2)
    answers = [platform.router.get(app) for _ in range(20)]
    assert all(r.status == 200 and r.text.startswith("Howdy from web.") for r in answers)
    # The worker was restarted on v2 too: its heartbeat (every 5 s) carries the new value.
    platform.up.wait_for(rf"dynomgr \| .* {app} app\[worker\.1\]: worker\.1: Howdy, heartbeat",
                         after=mark, timeout=30)
    assert platform.cli.ok("config:get", "GREETING", "--app", app).strip() == "Howdy"


def test_a_dyno_killed_with_sigkill_is_restarted_and_serves_again(platform, make_app, workdir):
    app = make_app("e2e-killed")
    deployed(platform, app, copy_example("hello", workdir))
    platform.cli.ok("ps:scale", "web=2", "--app", app)
    before = {d["name"]: d for d in wait_web(platform, app, 2)}
    agent = {d["name"]: d for d in platform.agent_dynos(app)}
    # The dyno's first process is the shell of its Procfile command; its child is the app.
    shell = agent["web.1"]["pid"]
    (server,) = children(shell)
    mark = platform.up.mark()
    os.kill(server, signal.SIGKILL)

    platform.up.wait_for(rf"{app} heroku\[web\.1\]: State changed from up to crashed",
                         after=mark, timeout=30)
    after = poll(lambda: next((d for d in platform.api.dynos(app)
                               if d["name"] == "web.1" and d["state"] == "up"
                               and d["restarts"] == 1 and d["serving"]), None),
                 "web.1 up again with 1 restart")
    assert after["address"] != before["web.1"]["address"]
    assert next(d for d in platform.agent_dynos(app) if d["name"] == "web.1")["pid"] != shell
    poll(lambda: platform.router.answers(app, lambda r: r.text.endswith("from web.1\n")),
         "an answer from the restarted web.1")


def test_a_crash_loop_backs_off_and_ps_shows_it(platform, make_app, workdir):
    app = make_app("e2e-crashing")
    source = write_app(workdir / "crashing", {
        "Procfile": "web: python3 -c \"import sys; print('cannot start'); sys.exit(3)\"\n"})
    mark = platform.up.mark()
    deployed(platform, app, source)  # an app's first deploy runs web=1 (as on Heroku)
    assert re.search(r"^web +1 +standard-1x", platform.cli.ok("ps:scale", "--app", app), re.M)
    crashed = poll(lambda: next((d for d in platform.api.dynos(app)
                                 if d["state"] == "crashed" and d["restarts"] >= 4), None),
                   "web.1 crashed after 4 restarts", timeout=60)
    assert crashed["reason"] == "Process exited with status 3"

    ps = platform.cli.ok("ps", "--app", app)
    row = re.search(r"^web\.1 +crashed \(Process exited with status 3\) +.* (\d+)$", ps, re.M)
    assert row and int(row.group(1)) >= 4, ps
    # Each crash waited longer before its restart: at once, then about 1 s, 2 s, 4 s (jitter
    # shaves up to a quarter off each, so these ranges cannot overlap).
    waits = []
    for _ in range(4):
        crash, mark = platform.up.wait_line(
            rf"dynomgr \| (\S+) {app} heroku\[web\.1\]: State changed from starting to crashed",
            after=mark)
        start, mark = platform.up.wait_line(
            rf"dynomgr \| (\S+) {app} heroku\[web\.1\]: State changed from crashed to starting",
            after=mark)
        waits.append(_seconds(start.group(1)) - _seconds(crash.group(1)))
    assert waits[0] < 0.5 and 0.5 < waits[1] < waits[2] < waits[3], waits
    response = platform.router.get(app)
    assert (response.status, h_code(response.body)) == (503, "H10")

    # A fixed release starts over: no back-off left from the crashes of the old one.
    assert deployed(platform, app, copy_example("hello", workdir)) == 2
    wait_web(platform, app, 1, release=2)
    assert re.search(r"^web\.1 +up +.* v2 +\S+ +127\.0\.0\.1:\d+ +0$",
                     platform.cli.ok("ps", "--app", app), re.M)
    assert platform.router.get(app).text == "Hello from web.1\n"


def _seconds(stamp: str) -> float:
    """Seconds since midnight of a dyno manager line's timestamp (`2026-11-26T15:49:28.0855+00:00`)."""
    hours, minutes, seconds = re.search(r"T(\d\d):(\d\d):(\d\d\.\d+)", stamp).groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_rollback_serves_the_old_code(platform, make_app, workdir):
    app = make_app("e2e-rollback")
    assert deployed(platform, app, hello_variant(workdir, "one")) == 1
    platform.cli.ok("ps:scale", "web=2", "--app", app)
    wait_web(platform, app, 2, release=1)
    assert platform.router.get(app).text.startswith("one: Hello from web.")

    assert deployed(platform, app, hello_variant(workdir, "two")) == 2
    wait_web(platform, app, 2, release=2)
    assert platform.router.get(app).text.startswith("two: ")

    out = platform.cli.ok("rollback", "v1", "--app", app)
    assert "now v3" in out
    wait_web(platform, app, 2, release=3)
    answers = [platform.router.get(app).text for _ in range(10)]
    assert all(text.startswith("one: Hello from web.") for text in answers), answers
    releases = platform.cli.ok("releases", "--app", app)
    assert re.search(r"^v3 \(current\) +succeeded +Rollback to v1", releases, re.M), releases


def test_a_preboot_deploy_under_a_steady_client_loop_loses_no_request(platform, make_app,
                                                                       workdir):
    app = make_app("e2e-preboot")
    platform.cli.ok("features:enable", "preboot", "--app", app)
    deployed(platform, app, hello_variant(workdir, "one"))
    platform.cli.ok("ps:scale", "web=2", "--app", app)
    wait_web(platform, app, 2, release=1)

    mark = platform.up.mark()
    with LoadLoop(platform.router, app, clients=1, max_requests=20000, max_seconds=90) as load:
        load.wait_for_body(lambda body: body.startswith("one: "), count=20)
        assert deployed(platform, app, hello_variant(workdir, "two")) == 2
        platform.up.wait_for(rf"{app} heroku\[api\]: Preboot: switched to v2", after=mark)
        load.wait_for_body(lambda body: body.startswith("two: "), count=50)
    result = load.result
    assert result.failures == 0, dict(result.outcomes)
    assert {body.split(":")[0] for body in result.bodies} == {"one", "two"}
    # The old dynos were stopped after the switch; the new ones serve.
    wait_web(platform, app, 2, release=2)


def test_a_preboot_release_that_cannot_boot_leaves_the_old_one_serving(platform, make_app,
                                                                        workdir):
    app = make_app("e2e-badboot")
    platform.cli.ok("features:enable", "preboot", "--app", app)
    deployed(platform, app, hello_variant(workdir, "one"))
    platform.cli.ok("ps:scale", "web=1", "--app", app)
    wait_web(platform, app, 1, release=1)

    broken = write_app(workdir / "broken", {
        "Procfile": "web: python3 -c \"import sys; sys.exit(4)\"\n"})
    assert deployed(platform, app, broken) == 2
    poll(lambda: any(d["release"]["version"] == 2 and d["state"] == "crashed"
                     and not d["serving"] and d["restarts"] >= 2
                     for d in platform.api.dynos(app)), "v2's web.1 crashing beside v1's")
    ps = platform.cli.ok("ps", "--app", app)
    assert re.search(r"^web\.1 +up +.* v1 ", ps, re.M), ps
    assert re.search(r"^web\.1 +crashed \(Process exited with status 4\), preboot +.* v2 ", ps,
                     re.M), ps
    answers = [platform.router.get(app) for _ in range(10)]
    assert all(r.status == 200 and r.text.startswith("one: ") for r in answers)

    # The next release drops the preboot dynos that never served, and switches to itself.
    assert deployed(platform, app, hello_variant(workdir, "three")) == 3
    dynos = wait_web(platform, app, 1, release=3)
    assert len(dynos) == 1, dynos
    assert platform.router.get(app).text.startswith("three: ")


def test_a_plain_deploy_under_load_holds_requests_at_the_router_instead_of_failing(
        platform, make_app, workdir):
    app = make_app("e2e-plain")
    deployed(platform, app, hello_variant(workdir, "one"))
    platform.cli.ok("ps:scale", "web=2", "--app", app)
    wait_web(platform, app, 2, release=1)

    with LoadLoop(platform.router, app, clients=4, max_requests=40000, max_seconds=90) as load:
        load.wait_for_body(lambda body: body.startswith("one: "), count=40)
        assert deployed(platform, app, hello_variant(workdir, "two")) == 2
        load.wait_for_body(lambda body: body.startswith("two: "), count=100)
    result = load.result
    # Old web dynos leave the routes, stop, and new ones boot: meanwhile requests wait in the
    # router's boot queue (75 s) rather than fail.
    assert result.failures == 0, dict(result.outcomes)
    assert {body.split(":")[0] for body in result.bodies} == {"one", "two"}
    wait_web(platform, app, 2, release=2)


def test_ps_restart_and_ps_stop_replace_dynos_without_failing_a_request(platform, make_app,
                                                                        workdir):
    app = make_app("e2e-ps")
    deployed(platform, app, copy_example("hello", workdir))
    platform.cli.ok("ps:scale", "web=2", "worker=1", "--app", app)
    wait_web(platform, app, 2)
    poll(lambda: len(platform.agent_dynos(app)) == 3, "three dynos running")

    def pids() -> dict[str, int]:
        return {d["name"]: d["pid"] for d in platform.agent_dynos(app) if d["state"] == "up"}

    def replaced(names: set[str], before: dict[str, int]):
        """Wait until exactly `names` run as new processes, the others as before, all up."""
        def check():
            now = pids()
            if set(now) != set(before) or not web_up(platform.api.dynos(app), 2):
                return None
            changed = {name for name in now if now[name] != before[name]}
            return now if changed == names else None
        return poll(check, f"{sorted(names)} replaced", timeout=60)

    with LoadLoop(platform.router, app, clients=2, max_requests=40000, max_seconds=120) as load:
        load.wait_for_body(lambda body: "web." in body, count=20)
        before = pids()
        out = platform.cli.ok("ps:restart", "web.2", "--app", app)
        assert "Restarting web.2" in out
        before = replaced({"web.2"}, before)

        out = platform.cli.ok("ps:stop", "web.1", "--app", app)
        assert "Stopping web.1" in out and "a new one starts" in out
        before = replaced({"web.1"}, before)

        out = platform.cli.ok("ps:restart", "--app", app)
        assert "3 dynos" in out
        replaced({"web.1", "web.2", "worker.1"}, before)
        load.wait_for_body(lambda body: "web." in body, count=load.result.requests + 20)
    result = load.result
    # A web dyno leaves the routers' tables before it gets SIGTERM: no request meets it dying.
    assert result.failures == 0, dict(result.outcomes)


def test_server_sent_events_stream_through_the_router(platform, make_app, workdir):
    from tests.test_examples_streams import read_events

    app = make_app("e2e-sse")
    platform.cli.ok("config:set", "TICK_SECONDS=0.05", "--app", app)
    deployed(platform, app, copy_example("sse", workdir))
    platform.cli.ok("ps:scale", "web=1", "--app", app)
    wait_web(platform, app, 1)
    with socket.create_connection(("127.0.0.1", platform.router.port), 10) as sock:
        sock.settimeout(10)
        sock.sendall(f"GET /events HTTP/1.1\r\nHost: {platform.router.host(app)}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        events = read_events(sock, 3)
    assert [e["id"] for e in events] == ["1", "2", "3"]
    assert all(e["event"] == "tick" and '"dyno": "web.1"' in e["data"] for e in events)


def test_a_websocket_echoes_through_the_router(platform, make_app, workdir):
    from tests.test_examples_streams import client_frame, read_head, server_frame

    app = make_app("e2e-websocket")
    deployed(platform, app, copy_example("websocket", workdir))
    platform.cli.ok("ps:scale", "web=1", "--app", app)
    wait_web(platform, app, 1)
    with socket.create_connection(("127.0.0.1", platform.router.port), 10) as sock:
        sock.settimeout(10)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {platform.router.host(app)}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 "), head
        buffered = bytearray(rest)
        sock.sendall(client_frame(0x1, b"hello"))
        assert server_frame(sock, buffered) == (0x1, b"web.1: hello")
