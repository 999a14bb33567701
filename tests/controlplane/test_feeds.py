"""The feeds over real HTTP (docs/feeds.md): snapshot, deltas, resume, expiry, heartbeats, roles.

A control node runs in-process on a loopback port; followers are plain aiohttp clients reading
the ndjson responses. Every test waits for the line it expects, never for time.
"""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp

from controlplane.store.models import Role
from tests.controlplane.conftest import HELLO_SLUG, slug_bytes
from tests.controlplane.followers import DynoManager, Follower


async def routes(api, *, since=None, role=Role.ROUTER) -> Follower:
    return await Follower.open(api.url, "/feeds/routes", api.tokens[role], since=since)


async def create(api, *names):
    for name in names:
        status, body, _ = await api.call("POST", "/apps", json={"name": name})
        assert status == 201, body


async def test_route_feed_snapshot_then_a_delta_per_change(node_factory):
    api = await node_factory()
    await create(api, "hello")
    async with await routes(api) as feed:
        snapshot = await feed.next()
        keys = snapshot.pop("affinity_keys")  # router-wide (tests/controlplane/test_affinity.py)
        assert [key["id"] for key in keys] == [k.id for k in await api.store.affinity_keys.list()]
        assert snapshot == {"type": "snapshot", "revision": await api.store.revision(),
                            "apps": [{"name": "hello", "hosts": ["hello.localhost"],
                                      "maintenance": False, "state": "blank", "dynos": []}]}
        await api.call("PATCH", "/apps/hello", json={"maintenance": True})
        delta = await feed.next()
        assert delta["type"] == "delta" and delta["revision"] > snapshot["revision"]
        assert delta["removed"] == [] and delta["apps"][0]["maintenance"] is True
        await api.call("POST", "/apps/hello/domains", json={"hostname": "www.hello.test"})
        await feed.until(lambda f: f.entries["hello"]["hosts"] == ["hello.localhost",
                                                                   "www.hello.test"])
        await api.call("DELETE", "/apps/hello")
        last = await feed.until(lambda f: "hello" not in f.entries)
        assert last.messages[-1]["removed"] == ["hello"]


async def test_a_resumed_follower_gets_what_it_missed_in_one_delta(api_factory):
    api = await api_factory()
    await create(api, "one")
    start = await api.store.revision()
    await create(api, "two", "three")
    await api.call("PATCH", "/apps/one", json={"maintenance": True})
    async with await routes(api, since=start) as feed:
        delta = await feed.next()
        assert delta["type"] == "delta" and delta["revision"] == await api.store.revision()
        assert [a["name"] for a in delta["apps"]] == ["one", "three", "two"]
    async with await routes(api, since=await api.store.revision()) as feed:
        assert (await feed.next())["type"] == "heartbeat"  # up to date: said at once


async def test_resume_after_a_restart_is_served_from_the_change_log(api_factory, tmp_path):
    url = f"sqlite:{tmp_path / 'shared.db'}"
    first = await api_factory(database_url=url)
    await create(first, "one")
    start = await first.store.revision()
    await create(first, "two")
    second = await api_factory(database_url=url)  # a new node: its hub starts after `start`
    second.tokens = first.tokens
    async with await routes(second, since=start) as feed:
        delta = await feed.next()
        assert delta["type"] == "delta" and [a["name"] for a in delta["apps"]] == ["two"]


async def test_an_expired_since_gets_a_fresh_snapshot(api_factory):
    api = await api_factory(change_history=64)
    await create(api, "keep")
    stale = await api.store.revision()
    for i in range(130):  # the oldest revisions are pruned past 64 + 64
        await api.call("PATCH", "/apps/keep", json={"maintenance": i % 2 == 0})
    async with await routes(api, since=stale) as feed:
        snapshot = await feed.next()
        assert snapshot["type"] == "snapshot" and snapshot["revision"] == \
            await api.store.revision()
        assert [a["name"] for a in snapshot["apps"]] == ["keep"]
    async with await routes(api, since=10**9) as feed:  # a revision this store never had
        assert (await feed.next())["type"] == "snapshot"


async def test_idle_followers_get_heartbeats_at_the_configured_interval(api_factory):
    api = await api_factory(feed_heartbeat=0.1)
    await create(api, "hello")
    async with await routes(api) as feed:
        await feed.next()
        beats = [await feed.next() for _ in range(3)]
        revision = await api.store.revision()
        assert all(b == {"type": "heartbeat", "revision": revision} for b in beats)
    vm = DynoManager(api.url, "vm-1", api.tokens[Role.DYNOMGR])
    await vm.register()
    await vm.close()
    async with await Follower.open(api.url, "/feeds/assignments",
                                   api.tokens[Role.DYNOMGR]) as feed:
        assert (await feed.next())["type"] == "snapshot"
        assert (await feed.next())["type"] == "heartbeat"


async def test_feed_roles_and_bad_requests(api):
    async with aiohttp.ClientSession(api.url) as session:
        async def status(path, role, **params):
            headers = {"Authorization": f"Bearer {api.tokens[role]}"}
            async with session.get(path, headers=headers, params=params) as response:
                return response.status, (await response.json())["message"]

        assert (await status("/feeds/routes", Role.DYNOMGR))[0] == 403
        assert (await status("/feeds/assignments", Role.ROUTER))[0] == 403
        code, message = await status("/feeds/assignments", Role.DYNOMGR, vm="vm-2")
        assert code == 403 and "bound to VM 'vm-1'" in message
        code, message = await status("/feeds/assignments", Role.USER)
        assert code == 422 and "?vm=" in message
        code, message = await status("/feeds/routes", Role.ROUTER, since="abc")
        assert code == 422 and "'since'" in message
    async with await Follower.open(api.url, "/feeds/assignments", api.tokens[Role.USER],
                                   vm="vm-1") as feed:  # operators may watch a VM's set
        assert (await feed.next()) == {"type": "snapshot", "revision": await api.store.revision(),
                                       "dynos": []}


async def test_assignments_carry_everything_a_dyno_manager_needs(node_factory):
    api = await node_factory()
    vm = DynoManager(api.url, "vm-1", api.tokens[Role.DYNOMGR])
    await vm.register()
    await create(api, "hello")
    await api.call("PATCH", "/apps/hello/config-vars", json={"GREETING": "hi"})
    release = await api.deploy("hello")
    async with await Follower.open(api.url, "/feeds/assignments",
                                   api.tokens[Role.DYNOMGR]) as feed:
        await feed.until(lambda f: len(f.entries) == 1)
        (entry,) = feed.entries.values()
        slug_id = release["slug"]["id"]
        data = (api.config.slug_dir / f"{slug_id}.tar.gz").read_bytes()
        assert entry["id"].startswith("d-") and entry == {
            "id": entry["id"], "kind": "formation", "app": "hello", "name": "web.1",
            "type": "web", "release": release["version"],
            "slug": {"url": f"{api.url}/slugs/{slug_id}/download",
                     "sha256": hashlib.sha256(data).hexdigest()},
            "env": {"GREETING": "hi"}, "memory_mb": 512, "health_check": None, "restart": 0}
        async with aiohttp.ClientSession(headers={
                "Authorization": f"Bearer {api.tokens[Role.DYNOMGR]}"}) as session:
            async with session.get(entry["slug"]["url"]) as response:
                assert response.status == 200 and await response.read() == data
                assert response.headers["X-Slug-Checksum"] == \
                    "sha256:" + entry["slug"]["sha256"]
        await vm.close()


async def test_a_dyno_manager_downloads_only_its_own_slugs(api):
    await create(api, "hello")
    await api.deploy("hello")  # no VM: the dyno stays unplaced
    other = slug_bytes({**HELLO_SLUG, "v2.txt": "2"})
    status, slug, _ = await api.call("POST", "/apps/hello/slugs", data=other, headers={
        "X-Slug-Checksum": "sha256:" + hashlib.sha256(other).hexdigest()})
    status, body, _ = await api.call("GET", f"/slugs/{slug['id']}/download", role=Role.DYNOMGR)
    assert status == 403 and "no dyno on VM 'vm-1'" in body["message"]
    status, _, response = await api.call("GET", f"/slugs/{slug['id']}/download")
    assert status == 200 and response.headers["Content-Type"] == "application/gzip"
    status, body, _ = await api.call("GET", "/slugs/nope/download", role=Role.DYNOMGR)
    assert status == 404


async def test_a_follower_that_hangs_up_is_forgotten(api):
    await create(api, "hello")
    feed = await routes(api)
    await feed.next()
    followers = api.node.followers
    assert followers.count == 1
    gone = asyncio.Event()
    followers.on_change(lambda: followers.count == 0 and gone.set())
    await feed.close()
    await api.call("PATCH", "/apps/hello", json={"maintenance": True})  # the next write fails
    await asyncio.wait_for(gone.wait(), 20)
