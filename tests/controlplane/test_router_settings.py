"""Per-app router settings over the API: validation (SQLite), and on both store backends the
route entry and the assignment entries they change, and an unhealthy dyno leaving the route
entry."""

from __future__ import annotations

from controlplane.store.models import Role
from tests.controlplane.followers import DynoManager, Follower

UNSET = {"request_timeout": None, "max_body_bytes": None, "health_check_path": None,
         "health_check_interval": None, "health_check_failures": None}


async def test_settings_are_validated_stored_and_reset(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    status, body, _ = await api.call("GET", "/apps/hello/router-settings")
    assert status == 200 and {k: body[k] for k in UNSET} == UNSET
    status, body, _ = await api.call("PATCH", "/apps/hello/router-settings",
                                     json={"request_timeout": 0})
    assert status == 422 and "from 1 to 3600 seconds" in body["message"]
    status, body, _ = await api.call("PATCH", "/apps/hello/router-settings",
                                     json={"max_body": 10})
    assert status == 422 and "unknown field 'max_body'" in body["message"]
    status, body, _ = await api.call("PATCH", "/apps/hello/router-settings", json={
        "request_timeout": 120, "max_body_bytes": 10485760})
    assert status == 200 and (body["request_timeout"], body["max_body_bytes"]) == (120, 10485760)
    status, body, _ = await api.call("PATCH", "/apps/hello/router-settings",
                                     json={"request_timeout": None})
    assert (body["request_timeout"], body["max_body_bytes"]) == (None, 10485760)
    status, body, _ = await api.call("GET", "/apps/nope/router-settings")
    assert status == 404


async def test_settings_reach_routers_and_dyno_managers_and_unhealthy_dynos_leave_the_table(
        node_factory):
    api = await node_factory()
    vm = DynoManager(api.url, "vm-1", api.tokens[Role.DYNOMGR])
    await vm.register()
    await api.call("POST", "/apps", json={"name": "hello"})
    await api.deploy("hello")
    await api.call("PATCH", "/apps/hello/formation/web", json={"quantity": 2})
    routes = await Follower.open(api.url, "/feeds/routes", api.tokens[Role.ROUTER])
    assignments = await Follower.open(api.url, "/feeds/assignments", api.tokens[Role.DYNOMGR])
    async with routes, assignments:
        await assignments.until(lambda f: len(f.entries) == 2)
        web = sorted(assignments.entries.values(), key=lambda e: e["name"])
        await vm.up(*web)
        await routes.until(lambda f: len(f.entries["hello"]["dynos"]) == 2)

        await api.call("PATCH", "/apps/hello/router-settings", json={
            "request_timeout": 90, "max_body_bytes": 2048, "health_check_path": "/health",
            "health_check_failures": 2})
        entry = (await routes.until(lambda f: "request_timeout" in f.entries["hello"])
                 ).entries["hello"]
        assert (entry["request_timeout"], entry["max_body_bytes"]) == (90, 2048)
        await assignments.until(lambda f: all(e["health_check"] == "/health"
                                              for e in f.entries.values()))
        assert all(e["health_check_failures"] == 2 and "health_check_interval" not in e
                   for e in assignments.entries.values())

        address = entry["dynos"][1]["address"]
        sick = vm.observed(web[1], "up", address=address, unhealthy="GET /health → 503 ×2")
        await vm.report(sick)
        await routes.until(lambda f: [d["name"] for d in f.entries["hello"]["dynos"]]
                           == ["web.1"])
        status, dynos, _ = await api.call("GET", "/apps/hello/dynos")
        assert [d["unhealthy"] for d in dynos if d["type"] == "web"] == [
            None, "GET /health → 503 ×2"]
        await vm.report(vm.observed(web[1], "up", address=address, unhealthy=None))
        await routes.until(lambda f: len(f.entries["hello"]["dynos"]) == 2)
    await vm.close()
