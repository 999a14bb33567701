"""The pool's state on each backend, `vms:remove` and the lost-VM retention through the real
API and CLI."""

from __future__ import annotations

import pytest

from controlplane.pool.settings import PoolConfig
from controlplane.store import errors
from controlplane.store.models import Role, VmRegistration
from controlplane.store.pool import PoolVm, PoolVmState, ProviderFailure
from tests.controlplane.ec2pool import until
from tests.controlplane.followers import DynoManager
from tests.controlplane.harness import ControlPlane
from tests.controlplane.test_cli import as_json, ok
from tests.controlplane.test_store_fleet import VM, leading, place_web
from tests.controlplane.test_store import deployed


async def test_a_live_vm_with_dynos_is_removed_only_when_forced(store):
    epoch = await leading(store)
    await deployed(store)
    await store.vms.register("vm-1", VM, now=100.0)
    token = await store.tokens.create(Role.DYNOMGR, vm_id="vm-1")
    await place_web(store, epoch)
    with pytest.raises(errors.Conflict, match="vms:remove vm-1 --force"):
        await store.pool.remove_vm("vm-1", force=False)
    removed = await store.pool.remove_vm("vm-1", force=True)
    assert (removed.dynos, removed.tokens, removed.terminating) == (1, 1, False)
    assert await store.vms.list() == []
    assert await store.tokens.authenticate(token.secret) is None  # it cannot come back
    async with store.fleet.scheduling(epoch) as fleet:
        assert [d.name for d, _ in await fleet.unplaced()] == ["web.1"]  # to be placed again
    with pytest.raises(errors.NotFound, match="`dynomesh vms` lists them"):
        await store.pool.remove_vm("vm-1", force=False)


async def test_removing_a_pool_vm_leaves_its_instance_to_the_pool_to_terminate(store):
    epoch = await leading(store)
    await store.pool.add_launching(epoch, PoolVm("vm-p", "ec2", "i-1", PoolVmState.ACTIVE,
                                                 1024, None, 1.0, 1.0))
    removed = await store.pool.remove_vm("vm-p", force=False)
    assert removed.terminating
    (row,) = (await store.pool.snapshot()).pool
    assert row.state is PoolVmState.TERMINATING


async def test_limits_errors_and_unknown_instances_are_kept_for_every_node(store):
    assert (await store.pool.settings()).min_vms is None
    await store.pool.set_limits(1, 4)
    await store.pool.set_limits(None, 6)
    with pytest.raises(errors.Invalid, match="min=7 is more than max=6"):
        await store.pool.set_limits(7, None)
    await store.pool.record_error(ProviderFailure("RequestLimitExceeded", "slow down",
                                                  "RunInstances", 5.0))
    await store.pool.record_unknown([{"instance_id": "i-9"}], 6.0)
    settings = await store.pool.settings()
    assert (settings.min_vms, settings.max_vms) == (1, 6)
    assert settings.error.code == "RequestLimitExceeded"
    assert (settings.unknown, settings.reconciled_at) == ([{"instance_id": "i-9"}], 6.0)


async def test_a_deposed_leader_cannot_launch_or_forget(store):
    old = await leading(store)
    await leading(store)
    with pytest.raises(errors.NotLeader):
        await store.pool.add_launching(old, PoolVm("vm-p", "ec2", None, PoolVmState.LAUNCHING,
                                                   1024, None, 1.0, 1.0))
    with pytest.raises(errors.NotLeader):
        await store.pool.forget(old, "vm-p")


async def test_only_vms_lost_before_the_cutoff_are_purged(store):
    epoch = await leading(store)
    for vm_id in ("vm-old", "vm-new", "vm-live"):
        await store.vms.register(vm_id, VmRegistration("10.0.0.5", 1024, (1, 2), "t"), now=1.0)
    async with store.db.write() as tx:
        await tx.execute("UPDATE vms SET state = 'lost', lost_at = '2026-01-01T00:00:00Z' "
                         "WHERE id = 'vm-old'")
        await tx.execute("UPDATE vms SET state = 'lost', lost_at = '2026-01-02T00:00:00Z' "
                         "WHERE id = 'vm-new'")
    assert await store.pool.purge_lost(epoch, "2026-01-01T12:00:00Z") == ["vm-old"]
    assert sorted(u.vm.id for u in await store.vms.list()) == ["vm-live", "vm-new"]


async def test_a_lost_local_vm_is_removed_after_the_retention(api_factory):
    api = await api_factory(agent_timeout=0.3, startup_grace=0.0,
                            pool=PoolConfig(lost_retention=1.0))
    agent = DynoManager(api.url, "vm-1", api.tokens[Role.DYNOMGR])
    try:
        await agent.register(capacity_mb=1024)  # and never heart-beats again

        async def state():
            _, listed, _ = await api.call("GET", "/vms")
            return [v["state"] for v in listed]

        await until(api.store, lambda: _equal(state(), ["lost"]), "vm-1 lost")
        await until(api.store, lambda: _equal(state(), []), "vm-1's row removed")
    finally:
        await agent.close()


async def _equal(value, expected) -> bool:
    return await value == expected


@pytest.fixture
def control(tmp_path):
    plane = ControlPlane(tmp_path / "home").start()
    yield plane
    assert plane.stop() == 0, plane.log()


async def test_vms_remove_and_pool_on_the_command_line(control):
    vm_token = ok(control.cli("tokens:create", "--role", "dynomgr", "--vm-id", "vm-1")).strip()
    agent = DynoManager(control.url, "vm-1", vm_token)
    try:
        await agent.register(capacity_mb=1024)
        text = ok(control.cli("pool"))
        assert text.startswith("Pool: local, min 0, max 10 (from flags)")
        header = next(line for line in text.splitlines() if line.startswith("VM "))
        assert header.split() == ["VM", "PROVIDER", "ID", "STATE", "ADDRESS", "DYNOS",
                                  "MEMORY", "LAST", "REPORT"]
        assert as_json(control.cli("pool", "--json"))["vms"][0]["state"] == "ready"
        refused = control.cli("pool:scale", "min=1")
        assert refused.returncode == 1 and "--pool-provider ec2" in refused.stderr
        assert control.cli("pool:scale", "min=x").returncode == 2
        removed = ok(control.cli("vms:remove", "vm-1"))  # no dynos: no --force needed
        assert removed.startswith("Removed VM vm-1: 0 dynos placed elsewhere, 1 dynomgr "
                                  "token(s) revoked")
        missing = control.cli("vms:remove", "vm-1")
        assert missing.returncode == 3 and "`dynomesh vms` lists them" in missing.stderr
    finally:
        await agent.close()
