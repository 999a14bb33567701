"""The EC2 pool through a real moto server on loopback: instances are run, tagged, described
and terminated over the AWS protocol by aioboto3, and each one is played by a real dyno
manager started from its own user-data (tests/controlplane/ec2pool.py), running real dynos.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from controlplane.pool.ec2 import POOL_TAG, VM_TAG, Ec2Settings
from controlplane.pool.settings import PoolConfig
from controlplane.store.models import Role
from tests.conftest import REPO_ROOT, free_port
from tests.controlplane.conftest import deploy_with
from tests.controlplane.ec2pool import AWS_ENV, MotoServer, ThrottlingProxy, VmPlayer, until
from tests.controlplane.followers import Follower
from tests.e2e.harness import shared_tmpdir

HELLO = {name: (REPO_ROOT / "examples" / "hello" / name).read_text()
         for name in ("Procfile", "web.py", "worker.py")}
VM_MB = 1024  # two standard-1x (512 MB) dynos per VM


@pytest.fixture(scope="module")
def moto_server():
    server = MotoServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
async def moto(moto_server, monkeypatch):
    """The moto server, emptied, with this process's AWS credentials pointing at nothing real."""
    await moto_server.reset()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return moto_server


@pytest.fixture
async def pool_node(api_factory, moto):
    """Factory: a control node whose pool is EC2 on moto, and a player for its instances
    (their data dirs where dyno users may enter, as on a VM)."""
    players: list[VmPlayer] = []
    root = shared_tmpdir("dynomesh-pool-")

    async def factory(*, image_id: str | None = None, node: dict | None = None,
                      endpoint: str | None = None, play: bool = True, **pool) -> tuple:
        port = free_port()
        ec2 = Ec2Settings(endpoint_url=endpoint or moto.url, region="us-east-1",
                          image_id=image_id or await moto.an_ami(), instance_type="t3.small",
                          install_command="true")
        settings = {"provider": "ec2", "capacity_mb": VM_MB, "max_vms": 10,
                    "reconcile_interval": 0.5, "idle_grace": 3600.0, **pool}
        api = await api_factory(port=port, take_out_grace=0.2, **(node or {}), pool=PoolConfig(
            control_urls=(f"http://127.0.0.1:{port}",), ec2=ec2, **settings))
        if not play:
            return api, None
        player = VmPlayer(api.store, moto, root / f"vms{len(players)}").start()
        players.append(player)
        return api, player

    yield factory
    for player in players:
        await player.close()
    shutil.rmtree(root, ignore_errors=True)


async def hello(api, web: int) -> None:
    status, body, _ = await api.call("POST", "/apps", json={"name": "hello"})
    assert status == 201, body
    await deploy_with(api.call, "hello", HELLO)
    await scale(api, web)


async def scale(api, web: int) -> None:
    status, body, _ = await api.call("PATCH", "/apps/hello/formation", json={
        "updates": [{"type": "web", "quantity": web}]})
    assert status == 200, body


async def dynos(api) -> list[dict]:
    status, body, _ = await api.call("GET", "/apps/hello/dynos")
    assert status == 200, body
    return body


async def all_up(api, count: int) -> list[dict] | None:
    shown = await dynos(api)
    if len(shown) == count and all(d["state"] == "up" for d in shown):
        return shown
    return None


async def pool(api) -> dict:
    status, body, _ = await api.call("GET", "/pool")
    assert status == 200, body
    return body


def live(instances: list[dict]) -> list[dict]:
    return [i for i in instances if i["State"]["Name"] in ("pending", "running")]


async def test_waiting_dynos_grow_the_pool_by_what_they_need_and_the_new_agents_run_them(
        pool_node, moto):
    api, player = await pool_node()
    await hello(api, web=3)  # 3 x 512 MB: two VMs of 1024 MB
    shown = await until(api.store, lambda: all_up(api, 3), "3 web dynos up on pool VMs")
    instances = live(await moto.instances())
    assert len(instances) == 2
    rows = {row.vm_id: row for row in (await api.store.pool.snapshot()).pool}
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags[POOL_TAG] == "default"
        assert rows[tags[VM_TAG]].instance_id == instance["InstanceId"]
    assert {d["vm"] for d in shown} == set(rows) == set(player.played)
    # Each agent ran the user-data's own command line with the token minted for its VM.
    for vm in player.played.values():
        assert f"--control {api.url} " in vm.user_data and "--capacity-mb 1024" in vm.user_data
        token = (vm.argv[vm.argv.index("--token-file") + 1])
        assert (await api.store.tokens.authenticate(Path(token).read_text().strip())).vm_id \
            == vm.vm_id

    async def both_active():
        shown_pool = await pool(api)
        return all(v["state"] == "active" for v in shown_pool["vms"]) and shown_pool

    shown_pool = await until(api.store, both_active, "both VMs active in the pool")
    assert [v["dynos"] for v in shown_pool["vms"]] == sorted_counts(shown)
    assert shown_pool["waiting_dynos"] == 0 and len(live(await moto.instances())) == 2


def sorted_counts(shown: list[dict]) -> list[int]:
    counts: dict[str, int] = {}
    for dyno in shown:
        counts[dyno["vm"]] = counts.get(dyno["vm"], 0) + 1
    return [counts[vm] for vm in sorted(counts)]


async def test_the_pool_never_grows_past_its_max(pool_node, moto):
    api, player = await pool_node()
    status, body, _ = await api.call("PATCH", "/pool", json={"max": 1})
    assert status == 200 and (body["min"], body["max"]) == (0, 1)
    await hello(api, web=3)

    async def two_up_one_waiting():
        shown = await dynos(api)
        states = sorted(d["state"] for d in shown)
        return states == ["unplaced", "up", "up"] and api.node.pool.passes

    passes = await until(api.store, two_up_one_waiting, "two dynos up, one waiting")
    await until(api.store, lambda: _more(api.node.pool.passes, passes), "another pool pass")
    assert len(live(await moto.instances())) == 1
    shown = await pool(api)
    assert (shown["waiting_dynos"], shown["max"], len(shown["vms"])) == (1, 1, 1)


async def _more(now: int, then: int) -> bool:
    return now > then


async def _value(value):
    return value


async def _count_live(moto, count: int) -> bool:
    return len(live(await moto.instances())) == count


async def test_an_idle_vm_is_drained_its_dynos_serving_elsewhere_before_it_is_terminated(
        pool_node, moto):
    # Two VMs up before any dyno, so the app is spread: one web dyno on each.
    api, player = await pool_node(idle_grace=0.5, min_vms=2)
    await until(api.store, lambda: _active(api, 2), "two VMs active")
    routes = await Follower.open(api.url, "/feeds/routes", api.tokens[Role.ROUTER])
    seen_at_termination: dict[str, list[dict]] = {}

    async def look_at_routes(vm):
        # What routers have at the moment EC2 says the instance is terminated.
        revision = await api.store.revision()
        await routes.until(lambda f: f.revision >= revision)
        seen_at_termination[vm.vm_id] = list(routes.entries["hello"]["dynos"])

    player.on_terminated = look_at_routes
    try:
        await hello(api, web=2)
        before = await until(api.store, lambda: all_up(api, 2), "2 web dynos up")
        assert len({d["vm"] for d in before}) == 2
        status, _, _ = await api.call("PATCH", "/pool", json={"min": 0})
        assert status == 200  # now either VM's one dyno fits on the other: one VM goes
        await until(api.store, lambda: _terminated_one(moto), "one instance terminated",
                    timeout=90)
        await until(api.store, lambda: _value(seen_at_termination), "the VM's shutdown")
        (gone,) = seen_at_termination
        moved = next(d for d in before if d["vm"] == gone)
        served = seen_at_termination[gone]
        assert len(served) == 2 and not any(player.in_range(gone, d["address"]) for d in served)
        assert moved["name"] in [d["name"] for d in served]  # its twin served by then
        shown = await until(api.store, lambda: all_up(api, 2), "both dynos up")
        (kept,) = {d["vm"] for d in shown}
        assert kept != gone and [v["id"] for v in (await pool(api))["vms"]] == [kept]
        assert moved["id"] not in [d["id"] for d in shown]  # the original itself is gone
    finally:
        await routes.close()


async def _active(api, count: int):
    vms = (await pool(api))["vms"]
    return len(vms) == count and all(v["state"] == "active" for v in vms)


async def _terminated_one(moto) -> bool:
    states = sorted(i["State"]["Name"] for i in await moto.instances())
    return states in (["running", "terminated"], ["pending", "terminated"])


async def test_an_instance_nobody_knows_is_reported_and_left_alone(pool_node, moto):
    api, _ = await pool_node()
    async with moto.client() as ec2:
        answer = await ec2.run_instances(
            ImageId=await moto.an_ami(), InstanceType="t3.small", MinCount=1, MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": POOL_TAG, "Value": "default"}, {"Key": VM_TAG, "Value": "vm-stray"}]}])
    stray = answer["Instances"][0]["InstanceId"]

    async def reported():
        shown = await pool(api)
        return shown["unknown_instances"] and shown

    shown = await until(api.store, reported, "the stray instance reported")
    assert [(u["instance_id"], u["vm_tag"]) for u in shown["unknown_instances"]] == [
        (stray, "vm-stray")]
    passes = api.node.pool.passes
    await until(api.store, lambda: _more(api.node.pool.passes, passes + 2), "more pool passes")
    (instance,) = await moto.instances()
    assert instance["State"]["Name"] == "running"  # never terminated
    assert shown["vms"] == [] and (await api.store.pool.snapshot()).pool == []  # nor adopted


async def test_an_aws_error_is_shown_with_its_code_and_leaves_nothing_behind(pool_node, moto):
    api, _ = await pool_node(image_id="ami-0badbadbadbadbad0")
    await hello(api, web=1)

    async def failed():
        shown = await pool(api)
        return shown["last_error"] and shown

    shown = await until(api.store, failed, "the launch failure shown")
    assert (shown["last_error"]["code"], shown["last_error"]["operation"]) == (
        "InvalidAMIID.NotFound", "RunInstances")
    assert shown["vms"] == [] and live(await moto.instances()) == []
    tokens = await api.store.tokens.list()
    assert [t for t in tokens if t.vm_id and t.vm_id != "vm-1"] == []  # its token revoked
    assert [d["state"] for d in await dynos(api)] == ["unplaced"]


async def test_a_lost_pool_vm_is_terminated_and_replaced(pool_node, moto):
    # Agents heart-beat every 5 s: silent for 8 s is lost.
    api, player = await pool_node(node={"agent_timeout": 8.0, "startup_grace": 0.0})
    await hello(api, web=1)
    (first,) = await until(api.store, lambda: all_up(api, 1), "web.1 up")
    vm = player.played[first["vm"]]
    player.kill(vm)

    async def up_elsewhere():
        shown = await all_up(api, 1)
        return shown and shown[0]["vm"] != vm.vm_id and shown

    (moved,) = await until(api.store, up_elsewhere, "web.1 up on a new VM", timeout=120)
    states = {i["InstanceId"]: i["State"]["Name"] for i in await moto.instances()}
    assert states[vm.instance_id] == "terminated"  # before its replacement was launched
    assert sorted(states.values()) == ["running", "terminated"]
    assert [v["id"] for v in (await pool(api))["vms"]] == [moved["vm"]]


async def test_throttled_launches_are_shown_with_aws_code_and_retried_with_back_off(pool_node,
                                                                                    moto):
    proxy = await ThrottlingProxy(moto, "RunInstances", "RequestLimitExceeded", fail=2).start()
    try:
        api, _ = await pool_node(endpoint=proxy.url)
        await hello(api, web=1)

        async def shown_throttled():
            shown = await pool(api)
            error = shown["last_error"]
            return error and error["code"] == "RequestLimitExceeded" and shown

        await until(api.store, shown_throttled, "the throttling shown")
        await until(api.store, lambda: all_up(api, 1), "web.1 up once EC2 let the launch in")
        runs = [a for a in proxy.answered if a.endswith("RunInstances")]
        assert runs == ["!RunInstances", "!RunInstances", "RunInstances"]
        assert len(live(await moto.instances())) == 1  # the refused calls left nothing
        assert (await pool(api))["last_error"]["code"] == "RequestLimitExceeded"  # kept
    finally:
        await proxy.close()


async def test_only_the_scheduling_node_runs_the_pool_and_a_successor_takes_it_over(
        postgres_url, pool_node, moto):  # the database first: it is dropped after the nodes stop
    a, _ = await pool_node(node={"database_url": postgres_url})
    await asyncio.wait_for(a.node.scheduler.leading.wait(), 20)
    b, _ = await pool_node(node={"database_url": postgres_url}, play=False)
    await hello(a, web=1)
    await until(a.store, lambda: all_up(a, 1), "web.1 up on a pool VM")
    assert len(live(await moto.instances())) == 1  # launched once, by node a alone
    assert (a.node.pool.passes > 0, b.node.pool.passes) == (True, 0)
    await a.node.stop()  # its leader lock goes with its connection
    await asyncio.wait_for(b.node.scheduler.leading.wait(), 20)
    await scale(b, 3)  # two more dynos: one more VM, launched by node b
    await until(b.store, lambda: _more(b.node.pool.passes, 0), "node b's pool pass")
    await until(b.store, lambda: _count_live(moto, 2), "a second instance")
