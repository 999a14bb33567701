"""The store's side of scheduling and the feeds, on SQLite and on PostgreSQL: `store.nodes`,
`store.fleet` (one scheduling pass) and `store/feeds.py`."""

from __future__ import annotations

import pytest

from controlplane.store import Feed, errors
from controlplane.store.feeds import assignments, route_facts
from controlplane.store.models import (FormationUpdate, Leader, NewDyno, NodeProgress,
                                       ObservedReport, ObservedState, TakeOut, VmLoad,
                                       VmRegistration, VmState)
from tests.controlplane.test_store import deployed

VM = VmRegistration("10.0.0.5", 4096, (20000, 20009), "test")


async def leading(store) -> int:
    return await store.nodes.claim_leadership("node-a", 100.0)


async def place_web(store, epoch, vm_id="vm-1") -> str:
    """A pass that creates web.1 of `hello` on `vm_id`; its id."""
    async with store.fleet.scheduling(epoch) as fleet:
        ((app, _),) = await fleet.apps({"hello"})
        return await fleet.create_dyno(app, NewDyno("web", 1, 1, "standard-1x", 512, True),
                                       vm_id)


# --- store.nodes ---

async def test_each_claim_is_a_new_epoch_and_fences_the_previous_leader(store):
    assert await store.nodes.leader() == Leader(None, None)
    first = await store.nodes.claim_leadership("node-a", 100.0)
    second = await store.nodes.claim_leadership("node-b", 200.0)
    assert second == first + 1
    assert await store.nodes.leader() == Leader("node-b", 200.0)
    revision = await store.revision()
    with pytest.raises(errors.NotLeader, match=f"this node holds {first}"):
        async with store.fleet.scheduling(first) as fleet:
            await fleet.vms()
    async with store.fleet.scheduling(second) as fleet:
        assert await fleet.vms() == []
    assert await store.revision() == revision  # claims and passes that change nothing


async def test_control_nodes_publish_their_progress_and_see_the_others(store):
    epoch = await leading(store)
    await store.nodes.publish(NodeProgress("node-a", 10.0, 1, 5), started_at=1.0)
    await store.nodes.publish(NodeProgress("node-b", 11.0, 2, 7), started_at=2.0)
    await store.nodes.publish(NodeProgress("node-b", 12.0, 0, 9), started_at=2.0)  # refreshed
    async with store.fleet.scheduling(epoch) as fleet:
        assert await fleet.other_nodes("node-a") == [NodeProgress("node-b", 12.0, 0, 9)]
    await store.nodes.forget("node-b")
    async with store.fleet.scheduling(epoch) as fleet:
        assert await fleet.other_nodes("node-a") == []
        assert await fleet.other_nodes("node-c") == [NodeProgress("node-a", 10.0, 1, 5)]


async def test_a_new_leader_forgets_the_previous_leaders_row_and_only_that(store):
    await store.nodes.claim_leadership("node-a", 100.0)
    for node, followers in (("node-a", 2), ("node-b", 1), ("node-c", 1)):
        await store.nodes.publish(NodeProgress(node, 10.0, followers, 5), started_at=1.0)
    epoch = await store.nodes.claim_leadership("node-b", 200.0)  # node-a's session ended
    async with store.fleet.scheduling(epoch) as fleet:
        assert await fleet.other_nodes("node-b") == [NodeProgress("node-c", 10.0, 1, 5)]
    epoch = await store.nodes.claim_leadership("node-b", 300.0)  # itself again: kept
    async with store.fleet.scheduling(epoch) as fleet:
        assert [n.id for n in await fleet.other_nodes("node-c")] == ["node-b"]


# --- store.fleet: what a pass reads ---

async def test_a_pass_reads_what_each_app_should_run(store):
    await deployed(store)
    await deployed(store, "other", types={"worker": "python w.py"})
    await store.releases.scale("hello", [FormationUpdate("worker", 2, "standard-2x")])
    await store.apps.set_feature("hello", "preboot", True)
    await store.apps.create("blank")
    async with store.fleet.scheduling(await leading(store)) as fleet:
        specs = {app.name: (app, dynos) for app, dynos in await fleet.apps(None)}
        assert [app.name for app, _ in await fleet.apps({"hello", "gone"})] == ["hello"]
    hello, dynos = specs["hello"]
    assert (hello.release, hello.preboot, dynos) == (1, True, [])
    assert {(p.type, p.quantity, p.size, p.memory_mb) for p in hello.processes.values()} == {
        ("web", 1, "standard-1x", 512), ("worker", 2, "standard-2x", 1024)}
    assert specs["other"][0].processes["worker"].quantity == 0
    assert (specs["blank"][0].release, specs["blank"][0].processes) == (None, {})


async def test_a_pass_reads_the_apps_changed_since_a_revision(store):
    await deployed(store)
    await deployed(store, "other")
    epoch = await leading(store)
    seen = await store.revision()
    await store.apps.set_feature("hello", "preboot", True)  # a formation change
    await store.apps.set_maintenance("other", True)  # a routes change
    async with store.fleet.scheduling(epoch) as fleet:
        assert await fleet.revision() == await store.revision()
        assert await fleet.changed_apps(seen) == {"hello", "other"}
        assert await fleet.changed_apps(await fleet.revision()) == set()
        assert await fleet.changed_apps(None) is None  # every app


# --- store.fleet: what a pass writes, and the feed changes it records ---

async def test_creating_placing_and_losing_dynos_records_the_feeds_they_change(store):
    await deployed(store)
    await store.vms.register("vm-1", VM, now=100.0)
    await store.vms.register("vm-2", VM, now=100.0)
    epoch = await leading(store)
    before = await store.revision()
    dyno_id = await place_web(store, epoch)
    changes = await store.changes_since(Feed.ASSIGNMENTS, before)
    assert [c.key for c in changes.changes] == ["vm-1"]
    assert [c.key for c in (await store.changes_since(Feed.ROUTES, before)).changes] == ["hello"]
    async with store.fleet.scheduling(epoch) as fleet:
        loads = await fleet.vm_loads()
        ((dyno, app_name),) = await fleet.dynos_on("vm-1")
        assert (dyno.id, app_name, dyno.vm_id) == (dyno_id, "hello", "vm-1")
        assert loads == {"vm-1": VmLoad(512, 1, 1, {dyno.app_id: 1})}
        await fleet.place(dyno, app_name, "vm-2")  # moves: leaves vm-1 in the same pass
    moved = await store.revision()
    assert {c.key for c in (await store.changes_since(Feed.ASSIGNMENTS, moved - 1)).changes} \
        == {"vm-1", "vm-2"}
    async with store.fleet.scheduling(epoch) as fleet:
        vm2 = next(vm for vm in await fleet.vms() if vm.id == "vm-2")
        await fleet.mark_lost(vm2)
        ((dyno, _),) = await fleet.dynos_on("vm-2")
        await fleet.place(dyno, "hello", None)
        assert [d.id for d, _ in await fleet.unplaced()] == [dyno_id]
    usage = {u.vm.id: u for u in await store.vms.list()}
    assert usage["vm-2"].vm.state is VmState.LOST and usage["vm-2"].dynos == 0


async def test_take_outs_restarts_rereleases_and_removals(store):
    await deployed(store)
    await store.vms.register("vm-1", VM, now=100.0)
    epoch = await leading(store)
    dyno_id = await place_web(store, epoch)
    async with store.fleet.scheduling(epoch) as fleet:
        ((dyno, _),) = await fleet.dynos_on("vm-1")
        await fleet.start_take_out(dyno, "hello", TakeOut.RESTART, 150.0)
        ((taken, app_name),) = await fleet.taken_out()
        assert (taken.take_out, taken.take_out_at, app_name) == (TakeOut.RESTART, 150.0, "hello")
        await fleet.restart(taken, "hello")
        assert await fleet.taken_out() == []
        ((dyno, _),) = await fleet.dynos_on("vm-1")
        assert dyno.restart_generation == 1
        await fleet.rerelease(dyno, 2)
        await fleet.serve([dyno], "hello")
        ((dyno, _),) = await fleet.dynos_on("vm-1")
        assert (dyno.release, dyno.serving) == (2, True)
        await fleet.remove(dyno, "hello")
        assert await fleet.dynos_on("vm-1") == []
    assert dyno_id not in {d.id for d in (await store.dynos.list("hello")).dynos}


# --- store/feeds.py ---

async def test_the_feeds_read_route_facts_and_a_vms_assignments(store):
    await deployed(store)
    await store.apps.add_domain("hello", "www.example.test")
    await store.vms.register("vm-1", VM, now=100.0)
    dyno_id = await place_web(store, await leading(store))
    await store.vms.report_states("vm-1", [ObservedReport(
        dyno_id, ObservedState.UP, 101.0, address="10.0.0.5:20000")], now=101.0)
    await store.releases.update_config("hello", {"GREETING": "hi"})  # v2: the dyno still runs v1
    async with store.db.read() as tx:
        facts = await route_facts(tx, None, "example.com")
        assert await route_facts(tx, {"gone"}, "example.com") == {}
        (assigned,) = await assignments(tx, "vm-1")
        assert await assignments(tx, "vm-2") == []
    hello = facts["hello"]
    assert (hello.hosts, hello.has_release, hello.web_quantity) == (
        ("hello.example.com", "www.example.test"), True, 1)
    assert [(d.id, d.routable) for d in hello.web_dynos] == [(dyno_id, True)]
    assert (assigned.dyno.id, assigned.app_name, assigned.slug_id, assigned.config) == (
        dyno_id, "hello", "slug-hello", {})
    assert assigned.checksum == "sha256:" + "ab" * 32


async def test_registering_a_vm_returns_it_with_what_is_placed_on_it(store):
    await deployed(store)
    first = await store.vms.register("vm-1", VM, now=100.0)
    assert (first.vm.address, first.used_mb, first.dynos) == ("10.0.0.5", 0, 0)
    await place_web(store, await leading(store))
    again = await store.vms.register("vm-1", VmRegistration("10.0.0.6", 4096, (20000, 20009),
                                                            "test"), now=200.0)
    assert (again.vm.address, again.vm.heartbeat_at, again.used_mb, again.dynos) == (
        "10.0.0.6", 200.0, 512, 1)
