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


class Load:
    """Requests back to back through each router, all the while (bounded: LoadLoop)."""

    def __init__(self, routers) -> None:
        self.loops = [LoadLoop(router, APP, clients=CLIENTS, max_requests=200_000,
                               max_seconds=240) for router in routers]
        for loop in self.loops:
            loop.__enter__()

    def served(self, count: int) -> None:
        """Through each router, `count` more answers from now on."""
        for loop in self.loops:
            loop.wait_for_body(lambda body: body.startswith("Hello from web."),
                               count=loop.result.outcomes["200"] + count)

    @property
    def failures(self) -> int:
        return sum(loop.result.failures for loop in self.loops)

    def stop(self) -> list:
        return [loop.stop() for loop in self.loops]


def a_vm_dies(multihost, api, load: Load, dynos: list[dict], dead: str) -> Tripwire:
    """Every process on `dead` killed at once: its dynos serve from the other VMs, neither
    router sends to the dead ones (the tripwire returned listens on their addresses from
    then on), and only requests in flight on them failed."""
    dead_dynos = {d["name"]: d["address"] for d in dynos if d["vm"] == dead}
    alive = tuple(vm for vm in VMS if vm != dead)
    marks = {name: router.mark() for name, router in multihost.routers.items()}
    multihost.net[dead].kill_all()
    moved = poll(lambda: (d := api.dynos(APP)) and web_spread(d, len(dynos), alive) and d,
                 f"{len(dynos)} web dynos up on {alive}", timeout=60)
    assert not {d["address"] for d in moved} & set(dead_dynos.values())
    assert api.get(f"/vms/{dead}")["state"] == "lost"
    revision = api.get("/status")["revision"]
    poll(lambda: all(multihost.router_revision(r) >= revision for r in ROUTERS),
         f"both routers on revision {revision}")
    tripwire = Tripwire(multihost.net[dead], list(dead_dynos.values()))
    # Out of quarantine (router/quarantine.py), a dead dyno still in a table would be tried.
    poll(lambda: not any(multihost.router_quarantined(r) for r in ROUTERS),
         "both routers to end their quarantine of the dead dynos")
    load.served(50)
    # What may fail: the request each client thread had in flight on a dead dyno (H13, or H18
    # if its response was being sent: the client sees it cut short), and per router the first
    # request that each dying dyno accepted and closed unanswered (an H13 quarantines the
    # dyno, router/exchange.py). Connects refused and reused connections found closed are
    # tried again on another dyno (router/retry.py).
    for loop in load.loops:
        outcomes = loop.result.outcomes
        assert loop.result.failures <= CLIENTS + len(dead_dynos), dict(outcomes)
        assert all(o in ("200", "503 H13") or o.startswith("error: IncompleteRead")
                   for o in outcomes), dict(outcomes)
    for name, router in multihost.routers.items():  # each one from a dyno of the dead VM
        failed_on = [m.groups() for m in router.matches(r"code=(H\d+) .* dyno=(\S+)",
                                                        after=marks[name])]
        assert {code for code, _ in failed_on} <= {"H13", "H18"}, failed_on
        assert {dyno for _, dyno in failed_on} <= set(dead_dynos), failed_on
    return tripwire


def the_leader_dies(multihost, load: Load, vms: tuple[str, ...]):
    """The scheduling control node killed: the other takes over and obeys a ps:scale, and
    both routers, whichever node they followed, route to the new dynos. -> its API."""
    leader = poll(lambda: multihost.leader(CONTROLS[0]), "a scheduling control node")
    survivor = next(name for name in CONTROLS if name != leader)
    multihost.net[leader].kill_all()
    poll(lambda: multihost.leader(survivor) == survivor, f"{survivor} to schedule")
    api = multihost.api_of(survivor)
    multihost.cli_of(survivor).ok("ps:scale", "web=8", "--app", APP)
    poll(lambda: web_spread(api.dynos(APP), 8, vms), "8 web dynos up", timeout=60)
    for loop in load.loops:
        loop.wait_for_body(lambda body: body.strip() in ("Hello from web.7", "Hello from web.8"),
                           timeout=60)
    return api


def an_agent_is_upgraded(multihost, api, load: Load, vm_id: str) -> None:
    """SIGTERM to an agent started with --keep-dynos, a new one: every dyno on its VM keeps
    running (same pids), none restarts, the control plane sees no change."""
    before = {d["id"]: (d["name"], d["address"], d["restarts"]) for d in api.dynos(APP)}
    vm = multihost.vms[vm_id]
    pids = {d["name"]: d["pid"] for d in vm.dynos()}
    assert vm.agent.stop(signal.SIGTERM) == 0
    vm.agent.wait_for(rf"dynomgr: exiting; {len(pids)} of {len(pids)} dynos left running")
    vm.agent = vm.start("dynomgr (upgraded)")
    for name in pids:
        vm.agent.wait_for(rf"{APP} heroku\[{re.escape(name)}\]: Adopted by a new dyno "
                          r"manager \(pid \d+, still up\)")
    assert {d["name"]: d["pid"] for d in vm.dynos()} == pids
    load.served(50)
    after = {d["id"]: (d["name"], d["address"], d["restarts"]) for d in api.dynos(APP)}
    assert after == before
    assert not vm.agent.matches(r"State changed") and not vm.agent.matches(r"Starting process")


def test_a_vm_and_a_control_node_die_and_an_agent_is_upgraded_under_load(multihost, tmp_path):
    cli, api = multihost.cli, multihost.api_of(CONTROLS[0])
    cli.ok("apps:create", APP, "--no-link")
    cli.ok("deploy", str(copy_example("hello", tmp_path)), "--app", APP)
    cli.ok("ps:scale", "web=6", "--app", APP)
    dynos = poll(lambda: (d := api.dynos(APP)) and web_spread(d, 6, VMS) and d,
                 "6 web dynos up, on all three VMs", timeout=60)
    assert all(d["address"].startswith(multihost.net[d["vm"]].address + ":") for d in dynos)
    routers = multihost.router_clients()
    for router in routers:
        assert answering_dynos(router, 6) == {f"web.{n}" for n in range(1, 7)}, router.address

    load, tripwire = Load(routers), None
    try:
        load.served(20)
        tripwire = a_vm_dies(multihost, api, load, dynos, dead="vm3")
        replaced = {name: router.mark() for name, router in multihost.routers.items()}
        failed_on_dead_vm = load.failures
        api = the_leader_dies(multihost, load, vms=("vm1", "vm2"))
        an_agent_is_upgraded(multihost, api, load, "vm1")
        assert web_spread(api.dynos(APP), 8, ("vm1", "vm2"))
    finally:
        results = load.stop()
        strays = tripwire.close() if tripwire is not None else []
    assert strays == [], f"routers still sent to the dead VM's dynos: {strays}"
    for name, router in multihost.routers.items():  # no error at all once the dynos had moved
        assert not router.matches(r"code=H", after=replaced[name]), name
    assert sum(r.failures for r in results) == failed_on_dead_vm, \
        [dict(r.outcomes) for r in results]
    assert all(r.outcomes["200"] > 100 for r in results), [dict(r.outcomes) for r in results]
