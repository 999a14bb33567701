"""Several control nodes on one PostgreSQL database: shared feeds, one scheduler, failover."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from controlplane.store.models import Role
from tests.controlplane.conftest import deploy_with
from tests.controlplane.followers import DynoManager, Follower, route_names
from tests.controlplane.harness import ControlPlane
from tests.controlplane.test_fleet import deployed, scale


async def test_two_nodes_share_feeds_and_one_schedules(postgres_url, api_factory):
    # A long take-out bound: if node b's follower did not count, the stop would wait 60 s.
    config = {"database_url": postgres_url, "take_out_grace": 0.1, "take_out_timeout": 60}
    a = await api_factory(**config)
    await asyncio.wait_for(a.node.scheduler.leading.wait(), 20)
    b = await api_factory(**config)
    assert not b.node.scheduler.leading.is_set()
    _, status, _ = await b.call("GET", "/status")
    assert status["leading"] is False and status["scheduler"]["node"] == a.node.node_id
    agent = DynoManager(b.url, "vm-1", b.tokens[Role.DYNOMGR])
    await agent.register()
    routes_b = await Follower.open(b.url, "/feeds/routes", b.tokens[Role.ROUTER])
    feed_b = await Follower.open(b.url, "/feeds/assignments", b.tokens[Role.DYNOMGR])
    try:
        await deployed(a)  # written through node a, scheduled by node a, served by node b
        await feed_b.until(lambda f: len(f.entries) == 1)
        (entry,) = feed_b.entries.values()
        await agent.up(entry)
        await routes_b.until(lambda f: route_names(f, "hello") == ["web.1"])
        status, _, _ = await a.call("POST", "/apps/hello/dynos/web.1/actions/stop")
        assert status == 202
        await routes_b.until(lambda f: route_names(f, "hello") == [])
        # Node a (the leader) stops the dyno once node b's router has it out: well within 60 s.
        await feed_b.until(lambda f: entry["id"] not in f.entries, timeout=20)
    finally:
        await routes_b.close()
        await feed_b.close()
        await agent.close()


async def test_a_standby_node_takes_over_when_the_leader_stops(postgres_url, api_factory):
    a = await api_factory(database_url=postgres_url)
    await asyncio.wait_for(a.node.scheduler.leading.wait(), 20)
    b = await api_factory(database_url=postgres_url)
    await a.node.stop()  # its leader lock is released with its connection
    await asyncio.wait_for(b.node.scheduler.leading.wait(), 20)
    await deployed(b)
    _, dynos, _ = await b.call("GET", "/apps/hello/dynos")
    feed = await Follower.open(b.url, "/feeds/routes", b.tokens[Role.ROUTER])
    try:  # the new leader schedules: web.1 exists (unplaced: no VM) and routes say so
        await feed.until(lambda f: f.entries.get("hello", {}).get("state") == "scaled_to_zero")
    finally:
        await feed.close()
    _, dynos, _ = await b.call("GET", "/apps/hello/dynos")
    assert [(d["name"], d["state"]) for d in dynos] == [("web.1", "unplaced")]


async def test_a_second_node_on_one_sqlite_file_stands_by(api_factory, tmp_path):
    url = f"sqlite:{tmp_path / 'control.db'}"
    a = await api_factory(database_url=url)
    b = await api_factory(database_url=url)  # by mistake: one control plane per SQLite file
    assert a.node.scheduler.leading.is_set() and not b.node.scheduler.leading.is_set()
    _, status, _ = await b.call("GET", "/status")
    assert status["scheduler"]["node"] == a.node.node_id
    await a.node.stop()
    await asyncio.wait_for(b.node.scheduler.leading.wait(), 20)


@pytest.mark.timeout(180)
async def test_killing_the_leader_process_lets_the_other_node_schedule(postgres_url, tmp_path):
    nodes = [ControlPlane(tmp_path / f"node{i}", database_url=postgres_url,
                          extra_args=("--startup-grace", "0"))
             for i in range(2)]
    for node in nodes:
        await asyncio.to_thread(node.start)
    try:
        token = nodes[0].token
        statuses = [await status_of(node, token) for node in nodes]
        leader = next(i for i, s in enumerate(statuses) if s["leading"])
        survivor = nodes[1 - leader]
        assert not statuses[1 - leader]["leading"]
        nodes[leader].kill()  # SIGKILL: no goodbye; PostgreSQL ends its session and lock
        async with aiohttp.ClientSession(survivor.url, headers={
                "Authorization": f"Bearer {token}"}) as session:
            async with session.post("/tokens", json={"role": "dynomgr", "vm_id": "vm-1"}) as r:
                vm_token = (await r.json())["token"]
            async with session.post("/apps", json={"name": "hello"}) as r:
                assert r.status == 201
        agent = DynoManager(survivor.url, "vm-1", vm_token)
        await agent.register()
        feed = await Follower.open(survivor.url, "/feeds/assignments", vm_token)
        try:
            api = _Cli(survivor.url, token)
            await api.deploy("hello")
            await scale(api, web=2)
            await feed.until(lambda f: sorted(e["name"] for e in f.entries.values())
                             == ["web.1", "web.2"])
        finally:
            await feed.close()
            await agent.close()
        assert (await status_of(survivor, token))["leading"] is True
    finally:
        for node in nodes:
            node.kill()


async def status_of(node: ControlPlane, token: str) -> dict:
    async with aiohttp.ClientSession(node.url, headers={
            "Authorization": f"Bearer {token}"}) as session:
        async with session.get("/status") as response:
            return await response.json()


class _Cli:
    """Enough of the test Api's `call`/`deploy` to drive a subprocess control plane."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    async def call(self, method, path, *, json=None, data=None, headers=None):
        async with aiohttp.ClientSession(self.url, headers={
                "Authorization": f"Bearer {self.token}", **(headers or {})}) as session:
            async with session.request(method, path, json=json, data=data) as response:
                return response.status, await response.json(), response

    async def deploy(self, app):
        return await deploy_with(self.call, app)
