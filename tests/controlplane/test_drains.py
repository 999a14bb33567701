"""Log drains through real control nodes: the app's stream reaches every drain in order, an
overflow shows as L10 in the drain and in the app's log, a stuck receiver holds nobody up, and
a drain moves to another node when its node stops."""

from __future__ import annotations

import asyncio
import io
import re
import time

import aiohttp

from controlplane.applog import StdoutAppLog
from controlplane.drains.service import DrainService, DrainSettings, LeaseTimes
from controlplane.logs.hub import LogHub
from controlplane.store.models import Role
from dynomesh.tasks import cancel_and_wait
from dynomesh import logline
from tests.controlplane.harness import ControlPlane
from tests.controlplane.logtail import BASE, Tail, line, post, texts
from tests.drainreceivers import HttpsReceiver, SyslogReceiver, tls_pair

WAIT = 20.0


async def add_drain(api, url: str, app: str = "hello") -> dict:
    status, drain, _ = await api.call("POST", f"/apps/{app}/drains", json={"url": url})
    assert status == 201, drain
    return drain


async def until(api, check) -> None:
    """Until `check()` holds: looked at again after each lease pass and delivery attempt of
    the node (an event), never after a sleep."""
    progress = api.node.drains.progress
    async with asyncio.timeout(WAIT):
        while True:
            progress.clear()
            if await check():
                return
            await progress.wait()


async def delivery(api, app: str = "hello") -> list[dict]:
    """Each drain's `delivery` as the API shows it."""
    _, listed, _ = await api.call("GET", f"/apps/{app}/drains")
    return [d["delivery"] for d in listed]


def async_all(api, predicate):
    async def check() -> bool:
        return all(predicate(d) for d in await delivery(api))
    return check


async def test_every_line_of_the_stream_reaches_every_drain_in_order(node_factory, receivers,
                                                                     tmp_path):
    server, _, ca_pem = tls_pair()
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    api = await node_factory(drain_ca_file=tmp_path / "ca.pem")
    await api.call("POST", "/apps", json={"name": "hello"})
    plain = await receivers(SyslogReceiver)
    https = await receivers(HttpsReceiver, server)
    token = (await add_drain(api, plain.url))["token"]
    https_token = (await add_drain(api, https.url()))["token"]
    router = [line(n, "heroku", "router", f'at=info method=GET path="/{n}" status=200')
              for n in range(0, 20, 2)]
    dyno = [line(n, "app", "web.1", f"GET /{n - 1} 200") for n in range(1, 20, 2)]
    assert (await post(api.url, api.tokens[Role.ROUTER], "hello", router))[0] == 200
    assert (await post(api.url, api.tokens[Role.DYNOMGR], "hello", dyno))[0] == 200
    await plain.wait_for(20)
    await https.wait_for(20)
    expected = [f'at=info method=GET path="/{n}" status=200' for n in range(0, 20, 2)] \
        + [f"GET /{n - 1} 200" for n in range(1, 20, 2)]
    assert plain.texts() == expected and https.texts() == expected
    # HOSTNAME is the drain's token, as Heroku writes it.
    first = f"<158>1 {logline.rfc5424_timestamp(BASE)} {token} heroku router - "
    assert plain.messages[0].decode().startswith(first)
    # The control plane's own lines go too.
    status, _, _ = await api.call("PATCH", "/apps/hello/config-vars", json={"GREETING": "hi"})
    assert status == 200
    await plain.wait_for(22)
    await https.wait_for(22)
    stamp = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00"
    for message, said in zip(plain.messages[20:], (rb"Set GREETING config vars",
                                                   rb"Release v1 created")):
        assert re.fullmatch(rb"<134>1 " + stamp + b" %s heroku api - " % token.encode() + said
                            + rb" by user token \w{8}\n", message), message
    # The same messages, each with its own drain's token.
    assert [m.replace(token.encode(), b"TOKEN") for m in plain.messages] == \
        [m.replace(https_token.encode(), b"TOKEN") for m in https.messages]
    await until(api, async_all(api, lambda d: d["sent"] == 22))


async def test_urls_are_shown_masked_and_bad_ones_refused(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    drain = await add_drain(api, "https://user:hunter2@logs.example.com/in?key=K3ySecret")
    assert drain["url"] == "https://user:****@logs.example.com/in?key=****"
    assert drain["token"].startswith("d.")
    _, listed, response = await api.call("GET", "/apps/hello/drains")
    assert "hunter2" not in await response.text() and "K3ySecret" not in await response.text()
    status, error, _ = await api.call("POST", "/apps/hello/drains",
                                      json={"url": "ftp://logs.example.com"})
    assert status == 422 and "ftp:// drains are not supported" in error["message"]
    status, error, _ = await api.call("POST", "/apps/hello/drains", json={"url": drain["url"]})
    assert status == 201  # the masked form is another URL; the real one is refused:
    status, error, _ = await api.call(
        "POST", "/apps/hello/drains",
        json={"url": "https://user:hunter2@logs.example.com/in?key=K3ySecret"})
    assert status == 409
    status, removed, _ = await api.call(
        "DELETE", "/apps/hello/drains/https%3A%2F%2Fuser%3Ahunter2%40logs.example.com%2Fin"
                  "%3Fkey%3DK3ySecret")
    assert status == 200 and removed["id"] == drain["id"]
    status, _, _ = await api.call("GET", "/apps/hello/drains", role=Role.ROUTER)
    assert status == 403


async def test_an_overflow_shows_as_l10_in_the_drain_and_in_the_apps_log(api_factory,
                                                                         receivers):
    api = await api_factory(drain_buffer=5)
    await api.call("POST", "/apps", json={"name": "hello"})
    receiver = await receivers(SyslogReceiver)
    await receiver.stop()  # away
    drain = await add_drain(api, receiver.url)
    tail = await Tail.open(api.url, api.tokens[Role.USER], "hello", lines=1)
    lines = [line(n, "app", "web.1", f"line {n}") for n in range(12)]
    assert (await post(api.url, api.tokens[Role.DYNOMGR], "hello", lines))[0] == 200
    await receiver.start()
    await receiver.wait_for(6)
    got = receiver.texts()
    assert got[:5] == [f"line {n}" for n in range(5)]
    assert re.fullmatch(r"Error L10 \(output buffer overflow\): 7 messages dropped since "
                        r"\S+\.", got[5])
    # The app's log says so too, naming the drain; the drain does not get that copy.
    try:
        await tail.until(lambda t: any("Error L10" in text for text in t.texts()))
    finally:
        await tail.close()
    shown = [t for t in await texts(api.url, api.tokens[Role.USER], "hello") if "L10" in t]
    assert shown == [f"{got[5]} (drain {drain['token']})"]
    assert (await post(api.url, api.tokens[Role.DYNOMGR], "hello",
                       [line(20, "app", "web.1", "after")]))[0] == 200
    await receiver.wait_for(7)
    assert receiver.texts()[6:] == ["after"]
    await until(api, async_all(api, lambda d: d["sent"] == 6))
    (shown,) = await delivery(api)
    assert shown["dropped"] == 7 and shown["retries"] >= 1
    assert "ConnectionRefusedError" in shown["last_error"]


async def test_a_stuck_receiver_holds_up_neither_other_drains_nor_the_apps_log(api_factory,
                                                                              receivers):
    api = await api_factory(drain_buffer=100)
    await api.call("POST", "/apps", json={"name": "hello"})
    stuck = await receivers(SyslogReceiver, stalled=True)
    healthy = await receivers(SyslogReceiver)
    for url in (stuck.url, healthy.url):
        await add_drain(api, url)
    big = "x" * 8000  # a few hundred of these fill the stuck connection's socket buffers
    for batch in range(10):
        lines = [line(batch * 100 + n, "app", "web.1", f"{batch * 100 + n} {big}")
                 for n in range(100)]
        status, answer = await post(api.url, api.tokens[Role.DYNOMGR], "hello", lines)
        assert status == 200 and answer["accepted"] == 100
    await healthy.wait_for(1000)
    assert [t.split(" ", 1)[0] for t in healthy.texts()] == [str(n) for n in range(1000)]
    shown = await texts(api.url, api.tokens[Role.USER], "hello", lines=1500)
    assert [t.split(" ", 1)[0] for t in shown] == [str(n) for n in range(1000)]
    async def settled() -> bool:
        _, listed, _ = await api.call("GET", "/apps/hello/drains")
        by_url = {d["url"]: d["delivery"] for d in listed}
        return by_url[healthy.url]["sent"] == 1000 and by_url[stuck.url]["dropped"] > 0

    await until(api, settled)


async def test_metrics_show_each_drains_delivery(api, receivers):
    await api.call("POST", "/apps", json={"name": "hello"})
    receiver = await receivers(SyslogReceiver)
    drain = await add_drain(api, receiver.url)
    assert (await post(api.url, api.tokens[Role.ROUTER], "hello",
                       [line(n, "heroku", "router", "at=info") for n in range(3)]))[0] == 200
    await receiver.wait_for(3)
    labels = f'app="hello",drain="{drain["token"]}"'
    scraped = {}

    async def counted() -> bool:
        status, _, response = await api.call("GET", "/metrics")
        scraped.update(status=status, text=await response.text())
        return f"dynomesh_drain_lines_sent_total{{{labels}}} 3.0" in scraped["text"]

    await until(api, counted)
    status, text = scraped["status"], scraped["text"]
    assert status == 200
    assert f"dynomesh_drain_lines_dropped_total{{{labels}}} 0.0" in text
    assert f"dynomesh_drain_buffered_lines{{{labels}}} 0.0" in text
    status, _, _ = await api.call("GET", "/metrics", role=None)
    assert status == 401


async def test_a_stopped_node_hands_its_drains_over_without_a_line_twice(postgres_url,
                                                                          api_factory,
                                                                          receivers):
    a = await api_factory(database_url=postgres_url, drain_lease=2.0)
    b = await api_factory(database_url=postgres_url, drain_lease=2.0)
    await a.call("POST", "/apps", json={"name": "hello"})
    receiver = await receivers(SyslogReceiver)
    await add_drain(a, receiver.url)

    async def owned(api) -> bool:
        return any(d["node"] == api.node.node_id for d in await delivery(api))

    async def either() -> bool:
        return bool((await delivery(a))[0]["node"])

    await until(a, either)
    first, second = (a, b) if await owned(a) else (b, a)
    assert (await post(a.url, a.tokens[Role.ROUTER], "hello",
                       [line(n, "heroku", "router", f"before {n}") for n in range(5)]))[0] == 200
    await receiver.wait_for(5)
    await first.node.close_feeds()
    await first.node.stop()  # gives the drain back; the other node claims it at once
    await until(second, lambda: owned(second))
    (listed,) = await delivery(second)
    assert (await post(second.url, second.tokens[Role.ROUTER], "hello",
                       [line(n, "heroku", "router", f"after {n}") for n in range(5, 10)]))[0] \
        == 200
    await receiver.wait_for(10)
    assert receiver.texts() == [f"before {n}" for n in range(5)] + \
        [f"after {n}" for n in range(5, 10)]
    assert listed["sent"] == 5  # the totals moved with the drain


async def test_when_the_delivering_node_dies_another_takes_its_drains_over(postgres_url,
                                                                           tmp_path,
                                                                           receivers):
    receiver = await receivers(SyslogReceiver)
    nodes = [ControlPlane(tmp_path / f"node{i}", database_url=postgres_url,
                          extra_args=("--drain-lease", "3")) for i in range(2)]
    for node in nodes:
        await asyncio.to_thread(node.start)
    try:
        token = nodes[0].token
        async with aiohttp.ClientSession(nodes[0].url, headers={
                "Authorization": f"Bearer {token}"}) as session:
            async with session.post("/tokens", json={"role": "router"}) as response:
                router = (await response.json())["token"]
            async with session.post("/apps", json={"name": "hello"}) as response:
                assert response.status == 201
            async with session.post("/apps/hello/drains", json={"url": receiver.url}) as r:
                assert r.status == 201
        assert (await post(nodes[0].url, router, "hello",
                           [line(n, "heroku", "router", f"before {n}") for n in range(5)]))[0] \
            == 200
        await receiver.wait_for(5)
        # Once the owner recorded how far it got (its next renewal), kill it: SIGKILL, no
        # goodbye, its lease is left to run out.
        by_id = {(await _get(node, token, "/status"))["node"]: node for node in nodes}
        (drain,) = await _get(nodes[0], token, "/apps/hello/drains")
        owner = drain["delivery"]["node"]
        survivor = next(node for node_id, node in by_id.items() if node_id != owner)
        await _until_recorded(survivor, token, sent=5)
        by_id[owner].kill()
        assert (await post(survivor.url, router, "hello",
                           [line(n, "heroku", "router", f"after {n}") for n in range(5, 10)]))[0] \
            == 200
        await receiver.wait_for(10)
        assert receiver.texts() == [f"before {n}" for n in range(5)] + \
            [f"after {n}" for n in range(5, 10)]
        (drain,) = await _get(survivor, token, "/apps/hello/drains")
        assert drain["delivery"]["node"] != owner
    finally:
        for node in nodes:
            node.kill()


async def _get(node: ControlPlane, token: str, path: str):
    async with aiohttp.ClientSession(node.url, headers={
            "Authorization": f"Bearer {token}"}) as session:
        async with session.get(path) as response:
            assert response.status == 200
            return await response.json()


async def _until_recorded(node: ControlPlane, token: str, *, sent: int) -> None:
    """Until `node`, which does not deliver the drain, shows `sent` lines: what the owner
    wrote at a renewal (every third of the lease, 1 s here). Another process's state, with
    no feed to wait on: polled, bounded."""
    async with asyncio.timeout(WAIT):
        while (await _get(node, token, "/apps/hello/drains"))[0]["delivery"]["sent"] < sent:
            await asyncio.sleep(0.1)


class Clock:
    """The drain service's clock, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def next_pass(service: DrainService) -> None:
    """Until the service's next lease pass (or delivery attempt) ends; it comes by itself."""
    service.progress.clear()
    await asyncio.wait_for(service.progress.wait(), WAIT)


async def test_a_node_that_cannot_renew_stops_delivering_by_its_time_to_stop(store,
                                                                             receivers):
    clock = Clock(1_800_000_000.0)
    lease = LeaseTimes(ttl=0.6, renew=0.2)
    service = DrainService(store, LogHub(store.logs), StdoutAppLog(io.StringIO()), "node-a",
                           DrainSettings(lease), clock=clock)
    await store.apps.create("hello")
    receiver = await receivers(SyslogReceiver)
    await store.drains.add("hello", receiver.url)
    running = asyncio.create_task(service.run())
    try:
        while not service.deliveries():
            await next_pass(service)
        renewed_at = clock.now  # the pass that claimed the drain renewed then
        await store.close()  # the database is gone for this node: no renewal can succeed
        # Until its time to stop, a node that cannot renew may go on delivering...
        clock.now = lease.stop_by(renewed_at) - 0.01
        await next_pass(service)
        await next_pass(service)
        assert service.deliveries()
        # ... and by then it has stopped: the lease has a renewal interval left, so that
        # another node that takes the drain over never delivers beside it.
        clock.now = lease.stop_by(renewed_at)
        await next_pass(service)
        assert not service.deliveries()
        await receiver.wait_closed()
    finally:
        await cancel_and_wait(running)
        await service.stop()


async def test_a_read_that_hangs_while_a_drain_starts_holds_up_no_renewal(postgres_url,
                                                                          api_factory,
                                                                          receivers):
    import asyncpg

    api = await api_factory(database_url=postgres_url, drain_lease=1.5)  # renewed every 0.5 s
    await api.call("POST", "/apps", json={"name": "hello"})
    first, second = await receivers(SyslogReceiver), await receivers(SyslogReceiver)
    await add_drain(api, first.url)
    await until(api, async_all(api, lambda d: d["node"] == api.node.node_id))
    # Another session locks the log lines: reading a drain's history now hangs.
    locker = await asyncpg.connect(postgres_url)
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE log_lines IN ACCESS EXCLUSIVE MODE")
            await add_drain(api, second.url)  # claimed at once; its history cannot be read
            added_at = time.time()  # the node's clock

            async def renewed_after_the_claim() -> bool:
                _, drains = await api.store.drains.list("hello")
                by_url = {d.url: d for d in drains}
                # Renewed in a later pass than the claim's: at least a renewal interval on.
                return by_url[first.url].lease_until > added_at + 1.5 + 0.5

            # The first drain's lease is still renewed (its delivery goes on lawfully); the
            # second drain is not delivered meanwhile.
            await until(api, renewed_after_the_claim)
            assert [d.url for d, _, _ in api.node.drains.deliveries()] == [first.url]
    finally:
        await locker.close()
    await until(api, async_all(api, lambda d: d["node"] == api.node.node_id))
    assert (await post(api.url, api.tokens[Role.ROUTER], "hello",
                       [line(n, "heroku", "router", f"after {n}") for n in range(3)]))[0] == 200
    for receiver in (first, second):
        await receiver.wait_for(3)
        assert receiver.texts() == [f"after {n}" for n in range(3)]
