"""The router's lines in the app's log stream: a real router shipping to a real control plane."""

from __future__ import annotations

import random
import re

from dynomesh.backoff import BackoffPolicy
from dynomesh.logship import LogShipper, ShipSettings
from router.accesslog import MemorySink
from router.config import Endpoint, RouterConfig
from router.logship import ControlLogSink
from router.server import Router
from tests.conftest import free_port
from tests.controlplane.harness import ControlPlane
from tests.controlplane.logtail import Tail
from tests.router.conftest import app_entry, parse_logfmt, table_of, wait_until
from tests.router.wire import RawClient

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def started_control(home, port: int) -> ControlPlane:
    return ControlPlane(home, extra_args=("--listen", f"127.0.0.1:{port}")).start()


async def requests(router: Router, client, paths: list[str]) -> None:
    for path in paths:
        response = await client.request("GET", path, host="hello.localhost")
        assert response.status == 200
    router.log_writer.flush()  # what the sweep does about once a second


async def test_request_lines_reach_the_log_and_an_outage_loses_only_what_did_not_fit(
        tmp_path, dyno_factory):
    port = free_port()
    control = started_control(tmp_path / "home", port)
    said: list[str] = []
    shipper = router = tail = None
    try:
        assert control.cli("apps:create", "hello", "--no-link").returncode == 0
        token = control.cli("tokens:create", "--role", "router").stdout.strip()
        # A small buffer, so that an outage overflows it; a short back-off, so the test is
        # quick to see the control plane back.
        shipper = LogShipper((control.url,), token,
                             ShipSettings(buffer_bytes=4096, min_interval=0.01,
                                          backoff=BackoffPolicy(0.1, 0.3, jitter=0.5)),
                             say=said.append, rng=random.Random(3))
        stdout = MemorySink()
        router = Router(RouterConfig(listen=Endpoint("127.0.0.1", 0), admin=None),
                        sinks=[stdout, ControlLogSink(shipper)])
        dyno = await dyno_factory()
        router.install(table_of(app_entry("hello", dynos=[dyno])))
        await router.start()
        shipper.start()
        client = await RawClient.connect(router.port)
        await requests(router, client, [f"/before/{n}?q=1" for n in range(3)])
        tail = await Tail.open(control.url, control.token, "hello", lines=1500)
        await tail.until(lambda t: len(t.lines) == 3)
        # Exactly the router's own lines, as its stdout has them (in time order), with
        # Heroku's fields.
        shown = [f"{m['at']} {m['source']}[{m['process']}]: {m['text']}" for m in tail.lines]
        assert shown == sorted(line.decode() for line in stdout.lines)
        fields = parse_logfmt(next(m["text"] for m in tail.lines if "/before/0" in m["text"]))
        assert (fields["at"], fields["method"], fields["path"], fields["host"], fields["fwd"],
                fields["dyno"], fields["status"], fields["protocol"]) == (
            "info", "GET", "/before/0?q=1", "hello.localhost", "127.0.0.1", "web.1", "200",
            "http")
        assert UUID.fullmatch(fields["request_id"]) and fields["bytes"].isdigit()
        assert re.fullmatch(r"\d+ms", fields["connect"]) and re.fullmatch(r"\d+ms",
                                                                          fields["service"])
        await tail.close()
        tail = None

        # The tail shows lines once they are stored, a moment before the shipper reads the
        # answer; killed in between, the control plane would see that batch again (at least
        # once, docs/logs.md). Killed once the answer is in, nothing is in flight.
        await wait_until(lambda: shipper.figures().shipped == 3 and not shipper.buffer.in_flight,
                         timeout=20)
        control.kill()  # SIGKILL: what it had stored stays
        during = [f"/during/{n:02d}" for n in range(40)]
        for start in range(0, 40, 5):
            await requests(router, client, during[start:start + 5])
        dropped = shipper.buffer.dropped
        assert 0 < dropped < 40  # some fit the buffer, the rest were counted
        await wait_until(lambda: any("cannot ship to" in message for message in said),
                         timeout=20)

        control = started_control(tmp_path / "home", port)
        await requests(router, client, ["/after/0"])
        tail = await Tail.open(control.url, control.token, "hello", lines=1500)
        await tail.until(lambda t: any("/after/0" in m["text"] for m in t.lines))
        paths = [parse_logfmt(m["text"]).get("path") for m in tail.lines
                 if m["process"] == "router"]
        assert sorted(paths[:3]) == [f"/before/{n}?q=1" for n in range(3)]
        assert paths[-1] == "/after/0"
        kept = [path for path in paths if path.startswith("/during/")]
        assert set(kept) < set(during) and len(kept) + dropped == 40
        (notice,) = [m for m in tail.lines if m["process"] == "logs"]
        assert notice["source"] == "heroku"
        assert re.fullmatch(rf"Error L10 \(output buffer overflow\): {dropped} messages dropped "
                            r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00\.", notice["text"])
        # The shipper says so once it has the control plane's answer.
        await wait_until(lambda: any("again after" in message and f"{dropped} lines dropped"
                                     in message for message in said), timeout=20)
        await wait_until(lambda: shipper.figures().shipped == 3 + len(kept) + 1, timeout=20)
        assert shipper.figures().dropped == dropped
    finally:
        if tail is not None:
            await tail.close()
        if router is not None:
            await router.stop()
        if shipper is not None:
            await shipper.aclose()
        control.stop()
