"""Scheduling over real HTTP: reports reach routes, scaling, take-outs, restarts, releases.

The test plays the routers (route feed followers) and the dyno managers (plain HTTP reports
and assignment feed followers, docs/feeds.md) of a control node running in-process.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane.store.models import Role
from tests.controlplane.conftest import HELLO_SLUG
from tests.controlplane.followers import DynoManager, Follower, route_names

FAST = {"take_out_grace": 0.2, "take_out_timeout": 10.0}


class Fleet:
    """A control node, its route follower, and one dyno manager per VM with its feed."""

    def __init__(self, api) -> None:
        self.api = api
        self.routes: Follower | None = None
        self.agents: dict[str, DynoManager] = {}
        self.feeds: dict[str, Follower] = {}

    async def follow_routes(self) -> Follower:
        self.routes = await Follower.open(self.api.url, "/feeds/routes",
                                          self.api.tokens[Role.ROUTER])
        return self.routes

    async def vm(self, vm_id: str, capacity_mb: int = 8192) -> DynoManager:
        token = await self.api.vm_token(vm_id)
        agent = DynoManager(self.api.url, vm_id, token)
        await agent.register(capacity_mb)
        self.agents[vm_id] = agent
        self.feeds[vm_id] = await Follower.open(self.api.url, "/feeds/assignments", token)
        return agent

    def assigned(self, app: str = "hello") -> dict[str, dict]:
        """dyno id -> (vm, entry) of every dyno of `app` assigned anywhere."""
        return {dyno_id: (vm, entry) for vm, feed in self.feeds.items()
                for dyno_id, entry in feed.entries.items() if entry["app"] == app}

    def names(self, app: str = "hello") -> list[str]:
        return sorted(entry["name"] for _, entry in self.assigned(app).values())

    async def until_assigned(self, predicate) -> None:
        deadline = time.monotonic() + 20
        while not predicate(self):
            waits = [asyncio.ensure_future(f.next(max(0.01, deadline - time.monotonic())))
                     for f in self.feeds.values()]
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                task.result()  # raises if a feed timed out or ended

    async def up(self, app: str = "hello", **only) -> list[dict]:
        """Report every assigned web dyno of `app` (matching `only`) up on its VM."""
        reported = []
        for vm, entry in self.assigned(app).values():
            if all(entry.get(k) == v for k, v in only.items()):
                await self.agents[vm].up(entry)
                reported.append(entry)
        return reported

    async def close(self) -> None:
        for follower in [self.routes, *self.feeds.values()]:
            if follower is not None:
                await follower.close()
        for agent in self.agents.values():
            await agent.close()


@pytest.fixture
async def fleet_factory():
    made: list[Fleet] = []

    async def factory(api) -> Fleet:
        made.append(Fleet(api))
        return made[-1]

    yield factory
    for fleet in made:
        await fleet.close()


async def deployed(api, app="hello", files=HELLO_SLUG) -> dict:
    status, body, _ = await api.call("POST", "/apps", json={"name": app})
    assert status == 201, body
    return await api.deploy(app, files)


async def scale(api, app="hello", **quantities) -> None:
    status, body, _ = await api.call("PATCH", f"/apps/{app}/formation", json={
        "updates": [{"type": t, "quantity": q} for t, q in quantities.items()]})
    assert status == 200, body


# --- reports reach the route feed ---

async def test_an_up_report_puts_the_dyno_in_the_route_feed(node_factory, fleet_factory):
    api = await node_factory()
    fleet = await fleet_factory(api)
    agent = await fleet.vm("vm-1")
    routes = await fleet.follow_routes()
    await deployed(api)
    await fleet.until_assigned(lambda f: f.names() == ["web.1"])
    await routes.until(lambda f: f.entries["hello"]["state"] == "booting")
    (entry,) = fleet.feeds["vm-1"].entries.values()
    starting = agent.observed(entry, "starting")
    await agent.report(starting)
    up = agent.observed(entry, "up", address=starting["address"])
    assert await agent.report(up) == {"applied": 1, "ignored": 0}
    reported_at = await api.store.revision()
    await routes.until(lambda f: f.entries["hello"]["state"] == "running")
    delta = routes.messages[-1]
    assert delta["revision"] == reported_at  # the report's own transaction reached routers
    assert delta["apps"][0]["dynos"] == [{"name": "web.1", "address": up["address"]}]
    status, listed, _ = await api.call("GET", "/apps/hello/dynos")
    assert [(d["name"], d["state"], d["vm"], d["address"]) for d in listed] == [
        ("web.1", "up", "vm-1", up["address"])]


async def test_a_crashed_web_dyno_leaves_the_routes_and_shows_its_restarts(api_factory,
                                                                           fleet_factory):
    api = await api_factory()
    fleet = await fleet_factory(api)
    agent = await fleet.vm("vm-1")
    routes = await fleet.follow_routes()
    await deployed(api)
    await fleet.until_assigned(lambda f: f.names() == ["web.1"])
    (entry,) = await fleet.up()
    await routes.until(lambda f: route_names(f, "hello") == ["web.1"])
    await agent.report(agent.observed(entry, "crashed", restarts=3, reason="Boot timeout",
                                      error_code="R10"))
    await routes.until(lambda f: f.entries["hello"]["state"] == "crashed")
    assert route_names(routes, "hello") == []
    _, (dyno,), _ = await api.call("GET", "/apps/hello/dynos")
    assert (dyno["state"], dyno["restarts"], dyno["error_code"]) == ("crashed", 3, "R10")


# --- scaling ---

async def test_scaling_changes_assignments_and_takes_web_dynos_out_before_stopping(
        node_factory, fleet_factory):
    api = await node_factory(**FAST)
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1")
    routes = await fleet.follow_routes()
    await deployed(api)
    await scale(api, web=3, worker=1)
    await fleet.until_assigned(lambda f: f.names() == ["web.1", "web.2", "web.3", "worker.1"])
    await fleet.up(type="web")
    await routes.until(lambda f: route_names(f, "hello") == ["web.1", "web.2", "web.3"])
    leaving = {e["id"] for _, e in fleet.assigned().values() if e["name"] != "web.1"}
    await scale(api, web=1, worker=0)
    await fleet.until_assigned(lambda f: f.names() == ["web.1"])
    assert route_names(routes, "hello") == ["web.1"]
    feed = fleet.feeds["vm-1"]
    web_out = routes.arrival_of(lambda m: m["type"] == "delta" and m["apps"]
                                and [d["name"] for d in m["apps"][0]["dynos"]] == ["web.1"])
    web_removed = feed.arrival_of(lambda m: m["type"] == "delta"
                                  and leaving & set(m["removed"]) - {worker_id(fleet, feed)})
    assert web_out < web_removed  # routers had web.2 and web.3 out before they were stopped
    route_revision = next(m["revision"] for m in routes.messages if m["type"] == "delta"
                          and m["apps"] and len(m["apps"][0]["dynos"]) == 1)
    removal_revision = next(m["revision"] for m in feed.messages if m["type"] == "delta"
                            and set(m["removed"]) & leaving)
    assert route_revision < removal_revision


def worker_id(fleet, feed) -> str:
    return next(m for m in feed.messages if m["type"] == "delta"
                and any(e["name"] == "worker.1" for e in m["dynos"]))["dynos"][0]["id"]


async def test_scale_up_writes_the_apps_log(api, fleet_factory):
    await deployed(api)
    await scale(api, web=2, worker=1)
    await scale(api, web=2)  # no change: no line
    await asyncio.to_thread(api.node.applog.flush)
    lines = [line.split(" ", 1)[1] for line in api.log_lines()]  # without the timestamp
    token = (await api.store.tokens.authenticate(api.tokens[Role.USER])).id[:8]
    assert lines == [f"hello heroku[api]: Deploy {d} by user token {token}"
                     for d in [lines[0].split()[3]]] + [
        f"hello heroku[api]: Release v1 created by user token {token}",
        f"hello heroku[api]: Scale to web=2, worker=1 by user token {token}"]


# --- take-outs wait for routers, boundedly ---

async def test_a_take_out_waits_for_a_stuck_router_only_until_the_timeout(api_factory,
                                                                          fleet_factory):
    api = await api_factory(take_out_grace=0.05, take_out_timeout=1.0)
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1")
    routes = await fleet.follow_routes()
    await deployed(api)
    await fleet.until_assigned(lambda f: f.names() == ["web.1"])
    await fleet.up()
    await routes.until(lambda f: route_names(f, "hello") == ["web.1"])
    api.node.followers.join(0)  # a follower this node never manages to send anything
    started = time.monotonic()
    status, _, _ = await api.call("POST", "/apps/hello/dynos/web.1/actions/stop")
    assert status == 202
    await routes.until(lambda f: route_names(f, "hello") == [])
    old = set(fleet.feeds["vm-1"].entries)
    await fleet.until_assigned(lambda f: set(f.feeds["vm-1"].entries) != old)
    assert time.monotonic() - started >= 1.0


async def test_with_no_router_connected_a_take_out_needs_only_the_grace(api_factory,
                                                                         fleet_factory):
    api = await api_factory(take_out_grace=0.05, take_out_timeout=600)
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1")
    await deployed(api)
    await fleet.until_assigned(lambda f: f.names() == ["web.1"])
    (entry,) = await fleet.up()
    status, _, _ = await api.call("DELETE", "/apps/hello/dynos/web.1")
    assert status == 202
    # Done long before the 600 s bound: nobody had to be waited for.
    await fleet.until_assigned(lambda f: f.assigned()[entry["id"]][1]["restart"] == 1)


# --- ps:restart and ps:stop ---

async def test_restart_takes_a_web_dyno_out_then_bumps_its_restart_counter(node_factory,
                                                                           fleet_factory):
    api = await node_factory(**FAST)
    fleet = await fleet_factory(api)
    agent = await fleet.vm("vm-1")
    routes = await fleet.follow_routes()
    await deployed(api)
    await scale(api, web=2)
    await fleet.until_assigned(lambda f: f.names() == ["web.1", "web.2"])
    await fleet.up()
    await routes.until(lambda f: route_names(f, "hello") == ["web.1", "web.2"])
    (web2,) = fleet.feeds["vm-1"].by_name("hello", "web.2")
    status, affected, _ = await api.call("DELETE", "/apps/hello/dynos/web.2")
    assert status == 202 and [d["taking_out"] for d in affected] == ["restart"]
    await routes.until(lambda f: route_names(f, "hello") == ["web.1"])
    feed = fleet.feeds["vm-1"]
    await feed.until(lambda f: f.entries[web2["id"]]["restart"] == 1)
    assert {k: v for k, v in feed.entries[web2["id"]].items() if k != "restart"} == \
        {k: v for k, v in web2.items() if k != "restart"}  # same dyno, restarted
    _, shown, _ = await api.call("GET", "/apps/hello/dynos/web.2")
    assert (shown["state"], shown["taking_out"]) == ("starting", None)
    await agent.up(feed.entries[web2["id"]])
    await routes.until(lambda f: route_names(f, "hello") == ["web.1", "web.2"])


async def test_stop_replaces_the_dyno_in_one_transaction(api_factory, fleet_factory):
    api = await api_factory(**FAST)
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1")
    routes = await fleet.follow_routes()
    await deployed(api)
    await fleet.until_assigned(lambda f: f.names() == ["web.1"])
    (old,) = await fleet.up()
    status, _, _ = await api.call("POST", "/apps/hello/dynos/web.1/actions/stop")
    assert status == 202
    await routes.until(lambda f: f.entries["hello"]["state"] == "booting")
    feed = fleet.feeds["vm-1"]
    await feed.until(lambda f: old["id"] not in f.entries)
    swap = next(m for m in feed.messages if m["type"] == "delta" and old["id"] in m["removed"])
    assert [e["name"] for e in swap["dynos"]] == ["web.1"]  # the new web.1, same revision
    assert swap["dynos"][0]["id"] != old["id"]
    await asyncio.to_thread(api.node.applog.flush)
    assert any("heroku[api]: Stop web.1 by" in line for line in api.log_lines())


async def test_restart_and_stop_name_unknown_dynos(api):
    await deployed(api)
    status, body, _ = await api.call("DELETE", "/apps/hello/dynos/web.9")
    assert status == 404 and "dynomesh ps" in body["message"]
    status, body, _ = await api.call("POST", "/apps/hello/dynos/nope/actions/stop")
    assert status == 404


# --- releases ---

async def test_a_release_without_preboot_stops_old_web_dynos_then_starts_new_ones(
        api_factory, fleet_factory):
    api = await api_factory(**FAST)
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1")
    routes = await fleet.follow_routes()
    await deployed(api)
    await scale(api, web=2, worker=1)
    await fleet.until_assigned(lambda f: f.names() == ["web.1", "web.2", "worker.1"])
    await fleet.up(type="web")
    await routes.until(lambda f: route_names(f, "hello") == ["web.1", "web.2"])
    before = fleet.assigned()
    worker = next(i for i, (_, e) in before.items() if e["type"] == "worker")
    status, _, response = await api.call("PATCH", "/apps/hello/config-vars",
                                         json={"GREETING": "v2"})
    assert response.headers["Dynomesh-Release"] == "2"
    await routes.until(lambda f: f.entries["hello"]["state"] == "booting")
    assert route_names(routes, "hello") == []  # requests queue at the router meanwhile
    await fleet.until_assigned(lambda f: sorted(e["release"] for _, e in
                                                f.assigned().values()) == [2, 2, 2])
    after = fleet.assigned()
    assert worker in after and after[worker][1]["env"] == {"GREETING": "v2"}  # in place
    assert not {i for i, (_, e) in before.items() if e["type"] == "web"} & set(after)
    await fleet.up(type="web", release=2)
    await routes.until(lambda f: route_names(f, "hello") == ["web.1", "web.2"])
    status, body, _ = await api.call("POST", "/apps/hello/releases", json={"release": 1})
    assert status == 201 and body["version"] == 3  # a rollback rolls the same way
    await fleet.until_assigned(lambda f: sorted(e["release"] for _, e in
                                                f.assigned().values()) == [3, 3, 3])
    assert all(e["env"] == {} for _, e in fleet.assigned().values())


async def test_preboot_switches_routes_in_one_delta_once_all_new_dynos_are_up(
        node_factory, fleet_factory):
    api = await node_factory(**FAST)
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1")
    routes = await fleet.follow_routes()
    await api.call("POST", "/apps", json={"name": "hello"})
    await api.call("PATCH", "/apps/hello/features/preboot", json={"enabled": True})
    await api.deploy("hello")
    await scale(api, web=2)
    await fleet.until_assigned(lambda f: f.names() == ["web.1", "web.2"])
    old = {e["id"]: e for e in await fleet.up()}
    await routes.until(lambda f: route_names(f, "hello") == ["web.1", "web.2"])
    old_routes = routes.entries["hello"]["dynos"]
    await api.deploy("hello", {**HELLO_SLUG, "web.py": "print('v2')\n"})
    await fleet.until_assigned(lambda f: f.names() == ["web.1", "web.1", "web.2", "web.2"])
    new = [e for _, e in fleet.assigned().values() if e["release"] == 2]
    assert {e["name"] for e in new} == {"web.1", "web.2"} and not set(old) & {
        e["id"] for e in new}  # same names, new ids, beside the old ones
    await fleet.up(id=new[0]["id"])
    await fleet.up(id=new[1]["id"])
    await routes.until(lambda f: f.entries["hello"]["dynos"] != old_routes)
    routed = [m["apps"][0]["dynos"] for m in routes.messages if m["type"] == "delta"]
    switch = next(i for i, dynos in enumerate(routed) if dynos != old_routes and i > 0
                  and routed[i - 1] == old_routes)
    # Routers kept the old dynos until one delta gave them both new ones and no old one.
    new_addresses = {d["address"] for d in routed[switch]}
    assert len(new_addresses) == 2 and not new_addresses & {d["address"] for d in old_routes}
    await fleet.until_assigned(lambda f: not set(old) & set(f.assigned()))
    await asyncio.to_thread(api.node.applog.flush)
    assert any(line.endswith(" hello heroku[api]: Preboot: switched to v2")
               for line in api.log_lines())


# --- VMs: placement, capacity, loss ---

async def test_dynos_spread_across_vms_and_wait_unplaced_for_room(api_factory,
                                                                  fleet_factory):
    api = await api_factory()
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1", capacity_mb=1024)
    routes = await fleet.follow_routes()
    await deployed(api)
    await scale(api, web=3)
    await fleet.until_assigned(lambda f: f.names() == ["web.1", "web.2"])
    _, listed, _ = await api.call("GET", "/apps/hello/dynos")
    assert [(d["name"], d["state"], d["vm"]) for d in listed if d["vm"] is None] == [
        (listed[2]["name"], "unplaced", None)]
    await fleet.vm("vm-2", capacity_mb=4096)  # room appears: the unplaced dyno goes there
    await fleet.until_assigned(lambda f: f.names() == ["web.1", "web.2", "web.3"])
    await scale(api, web=5)
    await fleet.until_assigned(lambda f: len(f.names()) == 5)
    spread = [vm for vm, _ in fleet.assigned().values()]
    assert spread.count("vm-1") == 2 and spread.count("vm-2") == 3
    await fleet.up()
    await routes.until(lambda f: len(route_names(f, "hello")) == 5)
    _, vms, _ = await api.call("GET", "/vms")
    assert [(v["id"], v["state"], v["used_mb"], v["dynos"]) for v in vms] == [
        ("vm-1", "ready", 1024, 2), ("vm-2", "ready", 1536, 3)]


async def test_a_lost_vms_dynos_move_in_one_transaction(node_factory, fleet_factory):
    api = await node_factory(agent_timeout=1.5, startup_grace=0)
    fleet = await fleet_factory(api)
    beating = {}
    for vm_id in ("vm-1", "vm-2"):
        beating[vm_id] = asyncio.create_task(heartbeats(await fleet.vm(vm_id), every=0.1))
    try:
        routes = await fleet.follow_routes()
        await deployed(api)
        await scale(api, web=2)
        await fleet.until_assigned(lambda f: len(f.feeds["vm-1"].entries) == 1
                                   and len(f.feeds["vm-2"].entries) == 1)
        await fleet.up()
        await routes.until(lambda f: route_names(f, "hello") == ["web.1", "web.2"])
        (moving,) = fleet.feeds["vm-2"].entries
        beating.pop("vm-2").cancel()  # vm-2 falls silent
        await fleet.until_assigned(lambda f: not f.feeds["vm-2"].entries
                                   and len(f.feeds["vm-1"].entries) == 2)
    finally:
        for task in beating.values():
            task.cancel()
    left = next(m for m in fleet.feeds["vm-2"].messages if moving in m.get("removed", ()))
    arrived = next(m for m in fleet.feeds["vm-1"].messages if m["type"] == "delta"
                   and any(e["id"] == moving for e in m["dynos"]))
    assert left["revision"] == arrived["revision"]  # never assigned to two VMs at once
    _, vms, _ = await api.call("GET", "/vms")
    assert [(v["id"], v["state"]) for v in vms] == [("vm-1", "ready"), ("vm-2", "lost")]
    await routes.until(lambda f: len(route_names(f, "hello")) == 1)  # until it reports up


async def heartbeats(agent: DynoManager, every: float) -> None:
    while True:  # a dyno manager's heartbeat loop (its interval, not test coordination)
        await agent.heartbeat()
        await asyncio.sleep(every)


async def test_no_vm_is_lost_during_the_grace_after_a_control_plane_start(api_factory,
                                                                          fleet_factory,
                                                                          tmp_path):
    url = f"sqlite:{tmp_path / 'shared.db'}"
    first = await api_factory(database_url=url)
    fleet = await fleet_factory(first)
    await fleet.vm("vm-1")
    await deployed(first)
    await fleet.until_assigned(lambda f: f.names() == ["web.1"])
    await first.node.stop()  # the control plane is away; the agent's heartbeats go nowhere
    async with first.store.db.write() as tx:
        await tx.execute("UPDATE vms SET heartbeat_at = heartbeat_at - 3600")
    started = time.monotonic()
    second = await api_factory(database_url=url, agent_timeout=0.2, startup_grace=1.5)
    await asyncio.wait_for(second.node.scheduler.leading.wait(), 20)
    token = await second.vm_token("vm-1")
    async with await Follower.open(second.url, "/feeds/assignments", token) as feed:
        await feed.until(lambda f: len(f.entries) == 1)
        await feed.until(lambda f: not f.entries)  # lost after all: it never came back
    assert time.monotonic() - started >= 1.5
    _, vms, _ = await second.call("GET", "/vms")
    assert vms[0]["state"] == "lost"


# --- reports: idempotent, checked, bound to their VM ---

async def test_reports_are_idempotent_ordered_and_bound_to_their_vm(api_factory,
                                                                   fleet_factory):
    api = await api_factory()
    fleet = await fleet_factory(api)
    agent = await fleet.vm("vm-1")
    other = await fleet.vm("vm-2", capacity_mb=256)  # too small: nothing lands there
    await deployed(api)
    await fleet.until_assigned(lambda f: f.names() == ["web.1"])
    (entry,) = fleet.feeds["vm-1"].entries.values()
    up = agent.observed(entry, "up", address="127.0.0.1:20500")
    assert await agent.report(up) == {"applied": 1, "ignored": 0}
    assert await agent.report(up) == {"applied": 0, "ignored": 1}  # the same change again
    stale = dict(agent.observed(entry, "crashed"), since=up["since"] - 1)
    assert await agent.heartbeat(stale) == {"applied": 0, "ignored": 1}
    assert await other.report(other.observed(entry, "crashed")) == {"applied": 0,
                                                                    "ignored": 1}
    gone = dict(up, id="d-unknown", since=agent.since())
    assert await agent.report(gone) == {"applied": 0, "ignored": 1}
    _, shown, _ = await api.call("GET", "/apps/hello/dynos/web.1")
    assert (shown["state"], shown["address"]) == ("up", "127.0.0.1:20500")


async def test_report_errors(api_factory):
    api = await api_factory()
    agent = DynoManager(api.url, "vm-1", api.tokens[Role.DYNOMGR])
    try:
        status, body = await agent.call("POST", "/vms/vm-1/heartbeat", {"dynos": []})
        assert status == 404 and "PUT /vms/vm-1 first" in body["message"]
        status, body = await agent.call("PUT", "/vms/vm-2", {"address": "x", "capacity_mb": 1})
        assert status == 403 and "bound to VM 'vm-1'" in body["message"]
        status, body = await agent.call("PUT", "/vms/vm-1", {"address": "10.0.0.5",
                                                              "capacity_mb": -1})
        assert status == 422 and "capacity_mb" in body["message"]
        await agent.register()
        status, body = await agent.call("POST", "/vms/vm-1/states", {"changes": [
            {"id": "d-1", "state": "up", "since": 1.0},
            {"id": "d-2", "state": "sleeping", "since": 1.0}]})
        assert status == 422 and body["message"].startswith("changes[1].state must be one of")
        status, body = await agent.call("POST", "/vms/vm-1/states", {"changes": [
            {"id": "d-1", "state": "up"}]})
        assert status == 422 and "changes[0].since" in body["message"]
        status, body, _ = await api.call("GET", "/vms/vm-1", role=Role.ROUTER)
        assert status == 403
    finally:
        await agent.close()


async def test_only_a_release_that_succeeded_rolls_out(api_factory, fleet_factory):
    from controlplane.store.models import ReleaseStatus
    from tests.controlplane.conftest import checksum, slug_bytes

    api = await api_factory(**FAST)
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1")
    await deployed(api)
    await fleet.until_assigned(lambda f: f.names() == ["web.1"])
    data = slug_bytes({**HELLO_SLUG, "web.py": "print('v2')\n"})
    _, slug, _ = await api.call("POST", "/apps/hello/slugs", data=data,
                                headers={"X-Slug-Checksum": checksum(data)})
    # A build or release phase holds a release `pending` (made through the store: the API
    # creates releases succeeded until builds exist).
    pending = await api.store.releases.create("hello", slug["id"], status=ReleaseStatus.PENDING)
    await scale(api, web=2)  # processed after the pending release: web.2 is still v1
    await fleet.until_assigned(lambda f: f.names() == ["web.1", "web.2"])
    assert sorted(e["release"] for _, e in fleet.assigned().values()) == [1, 1]
    await api.store.releases.set_status("hello", pending.version, ReleaseStatus.SUCCEEDED)
    await fleet.until_assigned(lambda f: sorted(e["release"] for _, e in
                                                f.assigned().values()) == [2, 2])
