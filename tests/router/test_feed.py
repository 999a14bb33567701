"""The router following the control plane's route feed, against a scripted control plane on
real sockets: snapshots, deltas, heartbeats, dropped and silent connections, expired history,
a refused token, and the control plane going away and coming back."""

from __future__ import annotations

import json
import random

import aiohttp
import pytest

from dynomesh.backoff import BackoffPolicy
from dynomesh.feedclient import FeedSettings
from router.accesslog import MemorySink
from router.config import Endpoint, RouterConfig
from router.feed import RouteFeed, RouteFeedConfig
from router.server import Router
from tests.feedserver import ROUTER_TOKEN, ScriptedControlPlane
from tests.router.conftest import RouterUnderTest, app_entry, wait_until

# Short enough that a reconnect takes a blink, long enough for a loaded machine.
FAST = FeedSettings(dead_after=2.0, backoff=BackoffPolicy(0.02, 0.2, jitter=0.5), connect_timeout=2.0)


@pytest.fixture
def control():
    server = ScriptedControlPlane().start()
    yield server
    server.close()


@pytest.fixture
async def feed_router_factory():
    routers: list[Router] = []

    async def make(urls: tuple[str, ...], token: str = ROUTER_TOKEN,
                   settings: FeedSettings = FAST) -> RouterUnderTest:
        config = RouterConfig(listen=Endpoint("127.0.0.1", 0), admin=Endpoint("127.0.0.1", 0))
        sink = MemorySink()
        router = Router(config, sinks=[sink], rng=random.Random(7))
        said: list[str] = []
        router.feed = RouteFeed(router, RouteFeedConfig(urls, token, settings), say=said.append,
                                rng=random.Random(3))
        router.feed.said = said
        await router.start()
        router.feed.start()
        routers.append(router)
        return RouterUnderTest(router, sink)

    yield make
    for router in routers:
        await router.feed.stop()
        await router.stop()


async def answer(router: RouterUnderTest, host: str):
    client = await router.client()
    try:
        response = await client.request(host=host)
    finally:
        await client.close()
    return response.status, response.body


async def admin_get(router: RouterUnderTest, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{router.router.admin_port}{path}") as response:
            return response.status, await response.text()


def revision_of(router: RouterUnderTest) -> int | None:
    return router.router.table.revision if router.router.table is not None else None


async def test_the_snapshot_becomes_the_table_and_requests_reach_its_dynos(
        control, feed_router_factory, dyno_factory):
    dyno = await dyno_factory("web.1")
    revision = control.set_route(app_entry("hello", dynos=[dyno]))
    router = await feed_router_factory((control.url,))
    await wait_until(lambda: revision_of(router) == revision)
    assert await answer(router, "hello.localhost") == (200, b"web.1 / ")
    assert (await answer(router, "nobody.localhost"))[0] == 404
    connection = control.feed_connections("routes")[0]
    assert connection.since is None and connection.sent[0]["type"] == "snapshot"
    assert router.router.feed.following


async def test_a_delta_replaces_one_app_and_removes_another_in_one_swap(
        control, feed_router_factory, dyno_factory):
    one, two = await dyno_factory("web.1"), await dyno_factory("web.2")
    control.set_route(app_entry("hello", dynos=[one]))
    control.set_route(app_entry("old", dynos=[one]))
    router = await feed_router_factory((control.url,))
    await wait_until(lambda: revision_of(router) == control.revision)
    before = router.router.table
    revision = control.change(routes=[app_entry("hello", dynos=[two])], removed_routes=["old"])
    await wait_until(lambda: revision_of(router) == revision)
    assert router.router.table is before  # a delta changes the live table in place
    assert await answer(router, "hello.localhost") == (200, b"web.2 / ")
    assert (await answer(router, "old.localhost"))[0] == 404


async def test_a_host_can_move_between_apps_within_one_delta(control, feed_router_factory,
                                                             dyno_factory):
    one, two = await dyno_factory("web.1"), await dyno_factory("web.2")
    control.set_route(app_entry("blog", ["blog.localhost", "www.example.test"], dynos=[one]))
    control.set_route(app_entry("shop", ["shop.localhost"], dynos=[two]))
    router = await feed_router_factory((control.url,))
    await wait_until(lambda: revision_of(router) == control.revision)
    revision = control.change(routes=[app_entry("blog", ["blog.localhost"], dynos=[one]),
                                      app_entry("shop", ["shop.localhost", "www.example.test"],
                                                dynos=[two])])
    await wait_until(lambda: revision_of(router) == revision)
    assert await answer(router, "www.example.test") == (200, b"web.2 / ")
    assert router.router.feed.rejected == 0


async def test_the_router_keeps_routing_while_the_control_plane_is_away_and_resumes_with_since(
        control, feed_router_factory, dyno_factory):
    one, two = await dyno_factory("web.1"), await dyno_factory("web.2")
    control.set_route(app_entry("hello", dynos=[one]))
    router = await feed_router_factory((control.url,))
    await wait_until(lambda: revision_of(router) == control.revision)
    seen = control.revision

    control.go_away()
    await wait_until(lambda: not router.router.feed.following)
    status, text = await admin_get(router, "/readyz")
    assert status == 200 and "not following" in text
    for _ in range(3):  # static stability: the last table keeps serving
        assert await answer(router, "hello.localhost") == (200, b"web.1 / ")
    assert any("lost" in line and "routing on the table of revision" in line
               for line in router.router.feed.said)

    # What changed while the router could not hear it arrives as a delta after `since`.
    revision = control.set_route(app_entry("hello", dynos=[two]))
    control.come_back()
    await wait_until(lambda: revision_of(router) == revision, timeout=10)
    assert await answer(router, "hello.localhost") == (200, b"web.2 / ")
    resumed = control.feed_connections("routes")[-1]
    assert resumed.since == seen
    assert resumed.sent[0] == {"type": "delta", "revision": revision,
                               "apps": [app_entry("hello", dynos=[two])], "removed": []}
    assert router.router.feed.reconnects >= 1
    assert any("again after" in line for line in router.router.feed.said)


async def test_a_resume_after_the_history_expired_gets_a_snapshot(control, feed_router_factory,
                                                                  dyno_factory):
    dyno = await dyno_factory("web.1")
    control.set_route(app_entry("hello", dynos=[dyno]))
    control.set_route(app_entry("gone", dynos=[dyno]))
    router = await feed_router_factory((control.url,))
    await wait_until(lambda: revision_of(router) == control.revision)
    control.go_away()
    await wait_until(lambda: not router.router.feed.following)
    control.remove_route("gone")
    control.expire_history()
    control.come_back()
    await wait_until(lambda: revision_of(router) == control.revision, timeout=10)
    resumed = control.feed_connections("routes")[-1]
    assert resumed.since is not None and resumed.sent[0]["type"] == "snapshot"
    assert (await answer(router, "gone.localhost"))[0] == 404
    assert (await answer(router, "hello.localhost"))[0] == 200


async def test_a_silent_connection_is_dead_after_the_timeout_and_replaced(control,
                                                                          feed_router_factory):
    control.set_route(app_entry("hello"))
    settings = FeedSettings(dead_after=0.5, backoff=BackoffPolicy(0.02, 0.2, jitter=0.5))
    router = await feed_router_factory((control.url,), settings=settings)
    await wait_until(lambda: router.router.feed.following)
    control.set_silent(True)  # open, but not even a heartbeat
    await control.wait_for_async(lambda: len(control.feed_connections("routes")) >= 2,
                                 what="a second feed connection")
    assert any("nothing received for 0.5 s" in line for line in router.router.feed.said)
    assert control.feed_connections("routes")[1].since == control.revision


async def test_heartbeats_advance_the_revision_without_building_a_table(control,
                                                                        feed_router_factory):
    control.set_route(app_entry("hello"))
    router = await feed_router_factory((control.url,))
    await wait_until(lambda: revision_of(router) == control.revision)
    table = router.router.table
    revision = control.assign({"id": "d-1", "app": "other"})  # another feed's change
    await wait_until(lambda: router.router.feed.revision == revision)
    assert router.router.table is table and table.revision < revision
    _, text = await admin_get(router, "/metrics")
    assert f"dynomesh_router_feed_revision {float(revision)}" in text.splitlines()


async def test_a_line_the_router_cannot_apply_is_refused_whole_then_a_snapshot_resyncs(
        control, feed_router_factory, dyno_factory):
    dyno = await dyno_factory("web.1")
    control.set_route(app_entry("blog", ["blog.localhost"], dynos=[dyno]))
    control.set_route(app_entry("shop", ["shop.localhost"], dynos=[dyno]))
    router = await feed_router_factory((control.url,))
    await wait_until(lambda: revision_of(router) == control.revision)
    table = router.router.table
    # A delta whose host belongs to another app cannot be applied; nothing of it is.
    bad = {"type": "delta", "revision": control.revision + 1, "removed": ["blog"],
           "apps": [app_entry("shop", ["shop.localhost", "blog.localhost"]),
                    app_entry("news", ["shop.localhost"])]}
    control.send_raw("routes", json.dumps(bad))
    await wait_until(lambda: router.router.feed.rejected == 1)
    assert router.router.table is table
    assert await answer(router, "blog.localhost") == (200, b"web.1 / ")
    await control.wait_for_async(lambda: len(control.feed_connections("routes")) >= 2)
    assert control.feed_connections("routes")[1].since is None  # a fresh snapshot, asked for
    await wait_until(lambda: router.router.feed.following and router.router.table is not table)
    assert any("claimed by both" in line for line in router.router.feed.said)


async def test_readyz_and_metrics_say_whether_it_has_a_table_and_follows(control,
                                                                         feed_router_factory):
    control.go_away()
    router = await feed_router_factory((control.url,))
    status, text = await admin_get(router, "/readyz")
    assert status == 503 and "no routing table" in text and "not following" in text
    control.set_route(app_entry("hello"))
    control.come_back()
    await wait_until(lambda: router.router.feed.following, timeout=10)
    status, text = await admin_get(router, "/readyz")
    assert status == 200 and f"following {control.url} at revision {control.revision}" in text
    _, metrics = await admin_get(router, "/metrics")
    lines = set(metrics.splitlines())
    assert "dynomesh_router_feed_following 1.0" in lines
    assert f"dynomesh_router_feed_revision {float(control.revision)}" in lines
    assert "dynomesh_router_feed_reconnects_total 0.0" in lines
    age = next(line for line in lines if line.startswith("dynomesh_router_feed_last_message_seconds "))
    assert float(age.split()[1]) < FAST.dead_after


async def test_a_second_control_url_is_tried_when_the_first_is_down(control, feed_router_factory):
    from tests.conftest import free_port

    control.set_route(app_entry("hello"))
    dead = f"http://127.0.0.1:{free_port()}"
    router = await feed_router_factory((dead, control.url))
    await wait_until(lambda: revision_of(router) == control.revision, timeout=10)
    assert router.router.feed.url == control.url


async def test_a_refused_token_is_said_and_retried(control, feed_router_factory):
    control.set_route(app_entry("hello"))
    router = await feed_router_factory((control.url,), token="dmt_wrong")
    await control.wait_for_async(lambda: len(control.recorded("GET", "/feeds/routes")) >= 2)
    assert router.router.table is None
    assert any("HTTP 401" in line and "--token-file" in line for line in router.router.feed.said)


async def test_a_large_snapshot_is_built_off_the_loop_and_swapped_in_whole(control,
                                                                           feed_router_factory,
                                                                           dyno_factory):
    dyno = await dyno_factory("web.1")
    for index in range(1500):  # about 150 KB on one line: decoded and built in slices
        control.routes[f"app{index}"] = app_entry(f"app{index}", dynos=[dyno])
    control.set_route(app_entry("hello", dynos=[dyno]))
    router = await feed_router_factory((control.url,))
    await wait_until(lambda: revision_of(router) == control.revision, timeout=10)
    assert len(router.router.table) == 1501
    assert len(json.dumps(control.feed_connections("routes")[0].sent[0])) > 64 * 1024
    assert await answer(router, "app1499.localhost") == (200, b"web.1 / ")
