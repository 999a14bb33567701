"""Pages the router answers itself: H10, H14, H20, H21, H80, H81, 404, and the boot queue."""

import asyncio

import pytest

from tests.router.conftest import app_entry, table_of, wait_until


async def answer(router, host="app1.localhost", method="GET"):
    client = await router.client()
    response = await client.request(method, "/page", host=host)
    closed = await client.closed()
    await client.close()
    return response, closed


def assert_router_page(response, closed, status, code, title):
    assert response.status == status
    assert response.get("Connection") == b"close" and closed
    assert response.get("Content-Type") == b"text/html; charset=utf-8"
    assert response.get("Via") == b"1.1 dynomesh"
    assert int(response.get("Content-Length")) == len(response.body)
    assert title.encode() in response.body
    if code:
        assert f"<code>{code}</code>".encode() in response.body


@pytest.mark.parametrize("entry, status, code, desc, level", [
    ({"state": "crashed"}, 503, "H10", "App crashed", "error"),
    ({"state": "scaled_to_zero"}, 503, "H14", "No web dynos running", "error"),
    ({"state": "running"}, 503, "H14", "No web dynos running", "error"),  # no dynos listed
    ({"state": "running", "maintenance": True}, 503, "H80", "Maintenance mode", "info"),
    ({"state": "blank"}, 502, "H81", "Blank app", "info"),
])
async def test_app_states_get_herokus_error_pages(router_factory, entry, status, code, desc,
                                                   level):
    router = await router_factory(table_of({"name": "app1", "hosts": ["app1.localhost"],
                                            **entry}))
    response, closed = await answer(router)
    assert_router_page(response, closed, status, code, "")
    fields = router.log_fields()
    assert (fields["at"], fields["code"], fields["desc"]) == (level, code, desc)
    assert fields["status"] == str(status) and fields["bytes"] == str(len(response.body))
    assert fields["path"] == "/page" and fields["host"] == "app1.localhost"
    assert router.router.metrics.apps["app1"].errors == {(status, code): 1}
    assert router.router.metrics.apps["app1"].in_flight == 0


async def test_maintenance_wins_over_running_dynos(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno], maintenance=True)))
    response, closed = await answer(router)
    assert_router_page(response, closed, 503, "H80", "Down for maintenance")
    assert dyno.requests == []


async def test_unknown_host_gets_a_404_no_such_app_page(router_factory):
    router = await router_factory(table_of({"name": "app1", "hosts": ["app1.localhost"]}))
    response, closed = await answer(router, host="nope.localhost")
    assert_router_page(response, closed, 404, None, "No such app")
    fields = router.log_fields()
    assert fields["status"] == "404" and fields["desc"] == "No such app" and "code" not in fields
    assert router.router.metrics.unrouted == {404: 1}


async def test_head_to_an_error_gets_the_head_only(router_factory):
    router = await router_factory(table_of({"name": "app1", "hosts": ["app1.localhost"],
                                            "state": "crashed"}))
    response, closed = await answer(router, method="HEAD")
    assert response.status == 503 and response.body == b"" and closed
    assert int(response.get("Content-Length")) > 0


async def test_no_table_yet_answers_404(router_factory):
    router = await router_factory(None)
    response, closed = await answer(router)
    assert response.status == 404 and closed


async def test_every_dyno_refusing_is_h21(router_factory, unused_port):
    router = await router_factory(table_of({"name": "app1", "hosts": ["app1.localhost"],
                                            "dynos": [{"name": "web.1",
                                                       "address": f"127.0.0.1:{unused_port}"}]}))
    response, closed = await answer(router)
    assert_router_page(response, closed, 503, "H21", "Application error")
    fields = router.log_fields()
    assert fields["code"] == "H21" and fields["desc"] == "Backend connection refused"
    assert router.router.metrics.apps["app1"].in_flight == 0


async def test_request_without_host_is_400(router_factory):
    router = await router_factory(table_of({"name": "app1", "hosts": ["app1.localhost"]}))
    client = await router.client()
    await client.send(b"GET / HTTP/1.1\r\n\r\n")
    response = await client.response()
    assert response.status == 400 and await client.closed()
    assert router.log_fields()["code"] == "H26"


async def test_unparseable_request_is_400_h26(router_factory):
    router = await router_factory(table_of({"name": "app1", "hosts": ["app1.localhost"]}))
    client = await router.client()
    await client.send(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n")
    response = await client.response()
    assert response.status == 400 and await client.closed()
    assert router.log_fields()["code"] == "H26"
    assert router.router.metrics.unrouted == {400: 1}


async def test_booting_app_times_out_with_h20(router_factory):
    router = await router_factory(
        table_of({"name": "app1", "hosts": ["app1.localhost"], "state": "booting"}),
        boot_queue_timeout=0.05)
    response, closed = await answer(router)
    assert_router_page(response, closed, 503, "H20", "Application error")
    assert router.log_fields()["desc"] == "App boot timeout"
    assert router.router.metrics.apps["app1"].in_flight == 0


async def test_requests_queue_while_an_app_boots_and_go_when_it_is_up(dyno_factory,
                                                                       router_factory):
    dyno = await dyno_factory()
    booting = table_of({"name": "app1", "hosts": ["app1.localhost"], "state": "booting"})
    router = await router_factory(booting, boot_queue_timeout=30)
    clients = [await router.client() for _ in range(3)]
    pending = [asyncio.create_task(c.request("GET", f"/{i}", host="app1.localhost"))
               for i, c in enumerate(clients)]
    backend = router.router.backends
    await wait_until(lambda: sum(len(b.waiters) for b in backend.known()) == 3)
    router.install(table_of(app_entry("app1", dynos=[dyno]), revision=2))
    responses = await asyncio.gather(*pending)
    assert sorted(r.body for r in responses) == [b"web.1 /0 ", b"web.1 /1 ", b"web.1 /2 "]
    for client in clients:
        await client.close()


async def test_a_booting_app_that_crashes_answers_h10(router_factory):
    router = await router_factory(
        table_of({"name": "app1", "hosts": ["app1.localhost"], "state": "booting"}),
        boot_queue_timeout=30)
    client = await router.client()
    pending = asyncio.create_task(client.request(host="app1.localhost"))
    await wait_until(lambda: any(b.waiters for b in router.router.backends.known()))
    router.install(table_of({"name": "app1", "hosts": ["app1.localhost"], "state": "crashed"}))
    response = await pending
    assert response.status == 503 and b"H10" in response.body
    await client.close()


async def test_dyno_closing_without_a_response_is_h13(dyno_factory, router_factory):
    async def hang_up(dyno, reader, writer):
        await dyno.next_request(reader)  # then close without a word

    dyno = await dyno_factory(handler=hang_up)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    response, closed = await answer(router)
    assert_router_page(response, closed, 503, "H13", "Application error")
    assert router.log_fields()["desc"] == "Connection closed without response"


async def test_a_dyno_closing_without_a_response_is_skipped_while_others_serve(
        dyno_factory, router_factory):
    async def hang_up(dyno, reader, writer):
        await dyno.next_request(reader)

    dying = await dyno_factory("web.1", handler=hang_up)
    healthy = await dyno_factory("web.2")
    router = await router_factory(table_of(app_entry("app1", dynos=[dying, healthy])))

    async def status() -> int:
        client = await router.client()
        try:
            return (await client.request(host="app1.localhost")).status
        finally:
            await client.close()

    first = [await status() for _ in range(20)]  # P2C picks web.1 half the time until...
    assert 503 in first, first
    after = first[first.index(503) + 1:] + [await status() for _ in range(10)]
    # ...its H13: then web.1 is quarantined and every later request goes to web.2.
    assert set(after) == {200}, first
    hung_up, served = router.router.backends.bound["app1"].pools
    assert hung_up in router.router.quarantine and served not in router.router.quarantine


async def test_dyno_closing_mid_response_cuts_the_client_and_logs_h18(dyno_factory,
                                                                      router_factory):
    async def truncated(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()

    dyno = await dyno_factory(handler=truncated)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(b"GET / HTTP/1.1\r\nHost: app1.localhost\r\n\r\n")
    rest = await client.reader.read()  # everything until the router closes
    assert rest.startswith(b"HTTP/1.1 200 OK") and rest.endswith(b"only this")
    fields = router.log_fields()
    assert fields["code"] == "H18" and fields["status"] == "200"
    assert router.router.metrics.apps["app1"].in_flight == 0
    await client.close()
