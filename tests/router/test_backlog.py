"""Requests beyond an app's in-flight limit wait their turn (the backlog), H11 only when the
backlog is too deep or too old; a dyno's idle connections follow the recent load."""

import asyncio

from tests.router.conftest import app_entry, table_of, wait_until
from tests.router.test_admin import get
from tests.router.wire import response_bytes


def holding_dyno_handler(release: asyncio.Event):
    """Answers each request with its target once `release` is set."""
    async def hold(dyno, reader, writer):
        while True:
            request = await dyno.next_request(reader)
            await release.wait()
            writer.write(response_bytes(body=request.target))
            await writer.drain()
    return hold


async def held_app(dyno_factory, router_factory, clients: int, **settings):
    """A one-dyno app whose dyno answers only once `release` is set, a router with
    `settings` in front of it, and `clients` connections to the router."""
    release = asyncio.Event()
    dyno = await dyno_factory(handler=holding_dyno_handler(release))
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])), **settings)
    return release, dyno, router, [await router.client() for _ in range(clients)]


async def test_requests_beyond_the_limit_wait_in_order_and_are_all_served(dyno_factory,
                                                                          router_factory):
    release, dyno, router, clients = await held_app(dyno_factory, router_factory, 5,
                                                    max_in_flight_per_dyno=2)
    first = [asyncio.create_task(c.request(target=f"/{i}", host="app1.localhost"))
             for i, c in enumerate(clients[:2])]
    await wait_until(lambda: len(dyno.requests) == 2)
    waiting = []
    for i, client in enumerate(clients[2:], start=2):  # one after the other: a known order
        waiting.append(asyncio.create_task(client.request(target=f"/{i}",
                                                          host="app1.localhost")))
        await wait_until(lambda: router.router.metrics.apps["app1"].queued == i - 1)
    assert len(dyno.requests) == 2  # the dyno got no more than its limit
    release.set()
    responses = await asyncio.gather(*first, *waiting)
    assert [r.status for r in responses] == [200] * 5
    assert [r.target for r in dyno.requests] == [b"/0", b"/1", b"/2", b"/3", b"/4"]
    await wait_until(lambda: len(router.log_lines()) == 5)
    lines = {router.log_fields(i)["path"]: router.log_fields(i) for i in range(5)}
    assert "queue" not in lines["/0"] and "queue" not in lines["/1"]
    assert [lines[f"/{i}"]["queue"] for i in (2, 3, 4)] == ["1", "2", "3"]
    assert all(lines[f"/{i}"]["wait"].endswith("ms") for i in (2, 3, 4))
    assert all(line["status"] == "200" and "code" not in line for line in lines.values())
    app = router.router.metrics.apps["app1"]
    assert app.queued == 0 and app.in_flight == 0 and sum(app.queue_wait.counts) == 3
    for client in clients:
        await client.close()


async def test_a_backlog_deeper_than_allowed_is_h11_at_once(dyno_factory, router_factory):
    release, dyno, router, clients = await held_app(dyno_factory, router_factory, 3,
                                                    max_in_flight_per_dyno=1, queue_per_dyno=1)
    held = asyncio.create_task(clients[0].request(host="app1.localhost"))
    await wait_until(lambda: len(dyno.requests) == 1)
    queued = asyncio.create_task(clients[1].request(host="app1.localhost"))
    await wait_until(lambda: router.router.metrics.apps["app1"].queued == 1)
    refused = await clients[2].request(host="app1.localhost")
    assert refused.status == 503 and b"H11" in refused.body
    assert router.log_fields()["code"] == "H11"
    assert router.log_fields()["desc"] == "Backlog too deep"
    release.set()
    assert [r.status for r in await asyncio.gather(held, queued)] == [200, 200]
    for client in clients:
        await client.close()


async def test_a_request_that_waits_longer_than_the_queue_timeout_is_h11(dyno_factory,
                                                                         router_factory):
    release, dyno, router, clients = await held_app(dyno_factory, router_factory, 2,
                                                    max_in_flight_per_dyno=1, queue_timeout=0.2)
    held = asyncio.create_task(clients[0].request(host="app1.localhost"))
    await wait_until(lambda: len(dyno.requests) == 1)
    timed_out = await clients[1].request(host="app1.localhost")
    assert timed_out.status == 503 and b"H11" in timed_out.body
    assert router.router.metrics.apps["app1"].queued == 0
    release.set()
    assert (await held).status == 200
    assert len(dyno.requests) == 1  # the one that timed out never reached the dyno
    for client in clients:
        await client.close()


async def test_a_request_that_left_the_backlog_frees_its_place(dyno_factory, router_factory):
    release, dyno, router, clients = await held_app(dyno_factory, router_factory, 3,
                                                    max_in_flight_per_dyno=1, queue_timeout=0.3)
    held = asyncio.create_task(clients[0].request(target="/held", host="app1.localhost"))
    await wait_until(lambda: len(dyno.requests) == 1)
    assert (await clients[1].request(target="/late", host="app1.localhost")).status == 503
    last = asyncio.create_task(clients[2].request(target="/last", host="app1.localhost"))
    await wait_until(lambda: router.router.metrics.apps["app1"].queued == 1)
    release.set()
    assert [(await held).status, (await last).status] == [200, 200]
    assert [r.target for r in dyno.requests] == [b"/held", b"/last"]
    await wait_until(lambda: len(router.log_lines()) == 3)
    assert router.log_fields(-1)["path"] == "/last"
    assert router.log_fields(-1)["queue"] == "1"  # first in line: the one before it left
    for client in clients:
        await client.close()


async def test_a_client_that_leaves_the_backlog_frees_its_place(dyno_factory, router_factory):
    release, dyno, router, clients = await held_app(dyno_factory, router_factory, 3,
                                                    max_in_flight_per_dyno=1)
    held = asyncio.create_task(clients[0].request(target="/held", host="app1.localhost"))
    await wait_until(lambda: len(dyno.requests) == 1)
    await clients[1].send(b"GET /gone HTTP/1.1\r\nHost: app1.localhost\r\n\r\n")
    await wait_until(lambda: router.router.metrics.apps["app1"].queued == 1)
    await clients[1].close()  # it gives up while waiting
    await wait_until(lambda: router.router.metrics.apps["app1"].queued == 0)
    last = asyncio.create_task(clients[2].request(target="/last", host="app1.localhost"))
    await wait_until(lambda: router.router.metrics.apps["app1"].queued == 1)
    release.set()
    assert [(await held).status, (await last).status] == [200, 200]
    assert [r.target for r in dyno.requests] == [b"/held", b"/last"]  # /gone never went
    await wait_until(lambda: len(router.log_lines()) == 3)
    assert [router.log_fields(i).get("code") for i in range(3)].count("H27") == 1
    for client in (clients[0], clients[2]):
        await client.close()


async def test_a_steady_load_reuses_its_dyno_connections_and_a_lighter_one_gives_them_back(
        dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])), admin=True,
                                  pool_window=2)
    clients = [await router.client() for _ in range(100)]
    for _ in range(5):  # five rounds of 100 concurrent requests
        responses = await asyncio.gather(*(c.request(host="app1.localhost") for c in clients))
        assert {r.status for r in responses} == {200}
    metrics = router.router.metrics
    (pool,) = router.router.backends.bound["app1"].pools
    # Beyond the first round's connections, the later rounds opened (almost) none.
    assert metrics.dyno_connects <= 110 and dyno.connections == metrics.dyno_connects
    assert len(pool.idle) >= 90
    # The load drops to one request at a time: after the window, the surplus is closed.
    for _ in range(3):
        await clients[0].request(host="app1.localhost")
        router.router.housekeeping(router.router.loop.time())
    assert len(pool.idle) <= 1
    status, scrape, _ = await get(router, "/metrics")
    assert status == 200
    assert "dynomesh_router_dyno_connects_total " in scrape
    assert "dynomesh_router_dyno_connects_per_second " in scrape
    assert 'dynomesh_router_backlog_requests{app="app1"} 0.0' in scrape
    for client in clients:
        await client.close()
