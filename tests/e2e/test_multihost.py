"""The platform on several hosts (network namespaces, tests/netns.py): PostgreSQL, two control
nodes, three VMs and two routers, each host with its own address (tests/e2e/multihost.py).

One app with web=6 is spread over the VMs and both routers route to all six. Under a steady
load through both routers: a VM dies (its agent and dynos killed at once), and its dynos serve
from the other VMs while neither router sends to the dead ones; the scheduling control node
dies, the other takes over and a `ps:scale` works; a VM's agent is upgraded (--keep-dynos) and
no dyno restarts. The only requests that may fail are those in flight on the dead VM.

Skipped, with the reason, where network namespaces cannot be made (not root, no iproute2).
"""

from __future__ import annotations

import re
import signal

import pytest

from tests.e2e.harness import LoadLoop, copy_example, poll
from tests.e2e.multihost import (CONTROLS, HOSTS, ROUTERS, VMS, Tripwire, running_platform,
                                 web_spread)
from tests.netns import Network, unavailable

pytestmark = [pytest.mark.timeout(300), pytest.mark.postgres]  # a cluster of its own

APP = "e2e-multihost"
CLIENTS = 1  # client threads per router; each has at most one request in flight


@pytest.fixture
def multihost():
    """The platform on its own network; everything removed afterwards, even on failure."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)  # -ra prints it
    with running_platform(Network(list(HOSTS))) as started:
        yield started


def answering_dynos(router, count: int, limit: int = 400) -> set[str]:
    """The dynos that answer `limit` requests at most through `router`, stopping once `count`
    different ones did."""
    seen: set[str] = set()
    for _ in range(limit):
        seen.add(router.get(APP, timeout=10).text.strip().rpartition(" ")[2])
        if len(seen) >= count:
            break
    return seen


def test_a_vm_and_a_control_node_die_and_an_agent_is_upgraded_under_load(multihost, tmp_path):
    cli, api = multihost.cli, multihost.api_of(CONTROLS[0])
    cli.ok("apps:create", APP, "--no-link")
    cli.ok("deploy", str(copy_example("hello", tmp_path)), "--app", APP)
    cli.ok("ps:scale", "web=6", "--app", APP)
    dynos = poll(lambda: (d := api.dynos(APP)) and web_spread(d, 6, VMS) and d,
                 "6 web dynos up, on all three VMs", timeout=60)
    assert all(d["address"].startswith(multihost.net[d["vm"]].address + ":") for d in dynos)
    routers = multihost.router_clients()
    everyone = {f"web.{n}" for n in range(1, 7)}
    for router in routers:
        assert answering_dynos(router, 6) == everyone, f"router at {router.address}"

    loads = [LoadLoop(router, APP, clients=CLIENTS, max_requests=200_000, max_seconds=240)
             for router in routers]
    for load in loads:
        load.__enter__()
    tripwire = None
    try:
        def served(body_count: int) -> None:
            """Each router's load gets `body_count` more answers from now on."""
            for load in loads:
                load.wait_for_body(lambda body: body.startswith("Hello from web."),
                                   count=load.result.outcomes["200"] + body_count)

        served(20)

        # 1. A VM dies: its dynos go elsewhere and no router sends to the dead ones.
        dead = "vm3"
        dead_dynos = {d["name"]: d["address"] for d in dynos if d["vm"] == dead}
        assert len(dead_dynos) == 2
        marks = {name: router.mark() for name, router in multihost.routers.items()}
        multihost.net[dead].kill_all()
        moved = poll(lambda: (d := api.dynos(APP)) and web_spread(d, 6, ("vm1", "vm2")) and d,
                     "6 web dynos up on vm1 and vm2", timeout=60)
        assert not {d["address"] for d in moved} & set(dead_dynos.values())
        assert api.get(f"/vms/{dead}")["state"] == "lost"
        replaced = {name: router.mark() for name, router in multihost.routers.items()}
        revision = api.get("/status")["revision"]
        poll(lambda: all(multihost.router_revision(r) >= revision for r in ROUTERS),
             f"both routers on revision {revision}")
        tripwire = Tripwire(multihost.net[dead], list(dead_dynos.values()))
        # Out of quarantine (router/quarantine.py), a dead dyno still in a table would be tried.
        poll(lambda: not any(multihost.router_quarantined(r) for r in ROUTERS),
             "both routers to end their quarantine of the dead dynos")
        served(50)
        # What may fail: the request each client thread had in flight on a dead dyno (H13, or
        # H18 if its response was being sent: the client sees it cut short), and per router
        # the first request that each dying dyno accepted and closed unanswered (an H13
        # quarantines the dyno, router/exchange.py). Connects refused and reused connections
        # found closed are tried again on another dyno (router/retry.py).
        for load in loads:
            outcomes = load.result.outcomes
            assert load.result.failures <= CLIENTS + len(dead_dynos), dict(outcomes)
            assert all(o in ("200", "503 H13") or o.startswith("error: IncompleteRead")
                       for o in outcomes), dict(outcomes)
        for name, router in multihost.routers.items():  # each one from a dyno of the dead VM
            failed_on = [m.groups() for m in router.matches(r"code=(H\d+) .* dyno=(\S+)",
                                                            after=marks[name])]
            assert {code for code, _ in failed_on} <= {"H13", "H18"}, failed_on
            assert {dyno for _, dyno in failed_on} <= set(dead_dynos), failed_on
        failed_on_dead_vm = sum(load.result.failures for load in loads)

        # 2. The scheduling control node dies: the other takes over and obeys a ps:scale.
        leader = poll(lambda: multihost.leader(CONTROLS[0]), "a scheduling control node")
        survivor = next(name for name in CONTROLS if name != leader)
        multihost.net[leader].kill_all()
        poll(lambda: multihost.leader(survivor) == survivor, f"{survivor} to schedule")
        api = multihost.api_of(survivor)
        multihost.cli_of(survivor).ok("ps:scale", "web=8", "--app", APP)
        poll(lambda: web_spread(api.dynos(APP), 8, ("vm1", "vm2")), "8 web dynos up",
             timeout=60)
        for load in loads:  # both routers, whichever node they followed, route to the new ones
            load.wait_for_body(lambda body: body.strip() in ("Hello from web.7",
                                                             "Hello from web.8"), timeout=60)

        # 3. An agent is upgraded: every dyno on its VM keeps running, none restarts.
        before = {d["id"]: (d["name"], d["address"], d["restarts"]) for d in api.dynos(APP)}
        vm = multihost.vms["vm1"]
        pids = {d["name"]: d["pid"] for d in vm.dynos()}
        assert vm.agent.stop(signal.SIGTERM) == 0  # started with --keep-dynos
        vm.agent.wait_for(rf"dynomgr: exiting; {len(pids)} of {len(pids)} dynos left running")
        vm.agent = vm.start("dynomgr (upgraded)")
        for name in pids:
            vm.agent.wait_for(rf"{APP} heroku\[{re.escape(name)}\]: Adopted by a new dyno "
                              r"manager \(pid \d+, still up\)")
        assert {d["name"]: d["pid"] for d in vm.dynos()} == pids
        served(50)
        after = {d["id"]: (d["name"], d["address"], d["restarts"]) for d in api.dynos(APP)}
        assert after == before and web_spread(api.dynos(APP), 8, ("vm1", "vm2"))
        assert not vm.agent.matches(r"State changed") and not vm.agent.matches(r"Starting process")
    finally:
        results = [load.stop() for load in loads]
        strays = tripwire.close() if tripwire is not None else []
    assert strays == [], f"routers still sent to the dead VM's dynos: {strays}"
    for name, router in multihost.routers.items():  # none at all once the dynos had moved
        assert not router.matches(r"code=H", after=replaced[name]), name
    assert sum(r.failures for r in results) == failed_on_dead_vm, \
        [dict(r.outcomes) for r in results]
    assert all(r.outcomes["200"] > 100 for r in results), [dict(r.outcomes) for r in results]
