"""One-off dynos over real HTTP: creating them, their sessions (two real WebSockets through
the control node), their end reports, and `?wait` on a release phase."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from controlplane.store.models import Role
from tests.controlplane.test_fleet import deployed, fleet_factory  # noqa: F401 (a fixture)

WITH_RELEASE = {"Procfile": "web: python3 web.py\nrelease: python3 migrate.py\n",
                "web.py": "print('hi')\n"}


async def agent_ws(api, dyno_id: str, vm_id: str = "vm-1"):
    session = aiohttp.ClientSession(headers={
        "Authorization": f"Bearer {await api.vm_token(vm_id)}"})
    return session, await session.ws_connect(f"{api.url}/vms/{vm_id}/dynos/{dyno_id}/attach")


async def placed_one_off(api, fleet, body: dict) -> dict:
    status, dyno, _ = await api.call("POST", "/apps/hello/dynos", json=body)
    assert status == 201, dyno
    await fleet.until_assigned(lambda f: dyno["id"] in f.feeds["vm-1"].entries)
    return dyno


@pytest.mark.parametrize("body, message", [
    ({}, "missing field 'command'"),
    ({"command": "  "}, "'command' is empty"),
    ({"command": "ls", "tty": [80]}, "'tty' must be [columns, rows]"),
    ({"command": "ls", "size": "huge"}, "unknown dyno size 'huge'"),
    ({"command": "ls", "timeout": 86401}, "'timeout' must be between 1 and 86400"),
    ({"command": "ls", "env": {"A B": "1"}}, "invalid config var name"),
])
async def test_a_bad_one_off_request_is_refused_by_name(api, body, message):
    await deployed(api)
    status, answer, _ = await api.call("POST", "/apps/hello/dynos", json=body)
    assert status == 422 and message in answer["message"], answer


async def test_a_one_off_needs_a_deploy_first(api):
    await api.call("POST", "/apps", json={"name": "empty"})
    status, answer, _ = await api.call("POST", "/apps/empty/dynos", json={"command": "ls"})
    assert status == 422 and "deploy it first" in answer["message"]


async def test_a_session_pairs_the_caller_and_the_dyno_and_relays_both_ways(api, fleet_factory):
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1")
    await deployed(api)
    dyno = await placed_one_off(api, fleet, {"command": "cat", "attach": True,
                                             "tty": [100, 30], "env": {"EXTRA": "1"}})
    entry = fleet.feeds["vm-1"].entries[dyno["id"]]
    assert entry["kind"] == "one-off" and entry["command"] == "cat" and entry["tty"] == [100, 30]
    assert entry["attach"] == f"{api.url}/vms/vm-1/dynos/{dyno['id']}/attach"
    assert entry["env"]["EXTRA"] == "1"
    assert dyno["attach_url"] == f"{api.url}/apps/hello/dynos/{dyno['id']}/attach"

    async with aiohttp.ClientSession(headers=api.auth()) as user:
        caller = await user.ws_connect(dyno["attach_url"])
        await caller.send_bytes(b"\x00typed early\n")  # before the dyno is there: held
        session, agent = await agent_ws(api, dyno["id"])
        try:
            assert json.loads((await agent.receive()).data) == {"op": "attached"}
            assert json.loads((await caller.receive()).data) == {"op": "attached"}
            assert (await agent.receive()).data == b"\x00typed early\n"
            await caller.send_str(json.dumps({"op": "signal", "name": "INT"}))
            assert json.loads((await agent.receive()).data) == {"op": "signal", "name": "INT"}
            await agent.send_bytes(b"\x01typed early\n")
            assert (await caller.receive()).data == b"\x01typed early\n"
            await agent.send_str(json.dumps({"op": "exit", "status": 0, "reason": None}))
            await agent.close()
            assert json.loads((await caller.receive()).data)["status"] == 0
            assert (await caller.receive()).type in (aiohttp.WSMsgType.CLOSE,
                                                     aiohttp.WSMsgType.CLOSED)
        finally:
            await session.close()


async def test_only_the_dynos_own_vm_may_join_its_session(api, fleet_factory):
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1")
    await fleet.vm("vm-2")
    await deployed(api)
    status, dyno, _ = await api.call("POST", "/apps/hello/dynos",
                                     json={"command": "bash", "attach": True})
    await fleet.until_assigned(lambda f: any(dyno["id"] in feed.entries
                                             for feed in f.feeds.values()))
    other = "vm-2" if dyno["id"] in fleet.feeds["vm-1"].entries else "vm-1"
    session = aiohttp.ClientSession(headers={
        "Authorization": f"Bearer {await api.vm_token(other)}"})
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{api.url}/vms/{other}/dynos/{dyno['id']}/attach")
        assert refused.value.status == 404
    finally:
        await session.close()
    status, _, _ = await api.call("GET", f"/vms/{other}/dynos/{dyno['id']}/attach")
    assert status == 403  # a user token is not a dyno manager's


async def test_a_caller_that_leaves_before_its_dyno_comes_takes_the_dyno_with_it(
        api, fleet_factory):
    fleet = await fleet_factory(api)
    await fleet.vm("vm-1")
    await deployed(api)
    dyno = await placed_one_off(api, fleet, {"command": "bash", "attach": True})
    async with aiohttp.ClientSession(headers=api.auth()) as user:
        caller = await user.ws_connect(dyno["attach_url"])
        await caller.close()
    await fleet.until_assigned(lambda f: dyno["id"] not in f.feeds["vm-1"].entries)
    _, dynos, _ = await api.call("GET", "/apps/hello/dynos")
    assert not [d for d in dynos if d["type"] == "run"]


async def test_wait_answers_when_the_release_phase_settles_its_release(api, fleet_factory):
    fleet = await fleet_factory(api)
    agent = await fleet.vm("vm-1")
    await api.call("POST", "/apps", json={"name": "hello"})
    release = await api.deploy("hello", WITH_RELEASE)
    assert release["status"] == "pending" and release["release_phase"]
    await fleet.until_assigned(lambda f: len(f.feeds["vm-1"].entries) == 1)
    (entry,) = fleet.feeds["vm-1"].entries.values()
    assert entry["type"] == "release" and entry["command"] == "python3 migrate.py"
    waiting = asyncio.ensure_future(api.call("GET", "/apps/hello/releases/1?wait=30"))
    await agent.up(entry)
    assert not waiting.done()
    down = agent.observed(entry, "down")
    await agent.report({**down, "exit_status": 0, "output": "migrated\n"})
    status, settled, _ = await waiting
    assert status == 200 and settled["status"] == "succeeded" and settled["current"]
    assert settled["phase_output"] == "migrated\nRelease phase succeeded"
    status, body, _ = await api.call("PATCH", "/apps/hello/formation/release",
                                     json={"quantity": 1})
    assert status == 422 and "never scaled" in body["message"]
