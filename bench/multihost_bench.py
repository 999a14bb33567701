"""The platform on several hosts (network namespaces: tests/netns.py, tests/e2e/multihost.py):
how long a VM's death, a control node's death and an agent upgrade take to get over, under a
steady load through both routers.

* VM death (repeated --kills times, each time the VM with most dynos; it comes back before
  the next): seconds from SIGKILL of every process on it to the VM being `lost`, to all web
  dynos up and serving on the other VMs (the API), and to both routers on a table without the
  dead ones; requests that failed meanwhile.
* leader failover (--failovers times; the dead node comes back before the next): seconds from
  SIGKILL of the scheduling control node to the other saying it schedules, and to a `ps:scale`
  through it (alternately one web dyno more and one less, so a take-out too) being done: the
  dynos up and serving, or gone. `cli_s` is the `dynomesh ps:scale` command's own time (a
  Python start-up), included in the scale figures.
* standby death (--standby-deaths times, before the failovers, while each router follows the
  node it started on): SIGKILL of the control node that does not schedule, then a scale down
  by one through the leader: seconds to the dyno being gone. The dead node's
  row in `control_nodes` counts its route followers (moved already) until it is stale (15 s),
  so the take-out waits up to --take-out-timeout (10 s).
* agent upgrade with --upgrade-dynos web dynos on the app (a third on the upgraded VM):
  restarts (must be 0: same pids, same restart counts) and seconds from the new agent's launch
  to its last dyno adopted; failed requests.

The control plane runs with --agent-timeout 5 (dyno managers heart-beat every 0.5 s) and
--startup-grace 3 (tests/e2e/multihost.py `Timings`): with the defaults (15 s, heartbeats every
5 s) a VM's dynos serve elsewhere about 10 s later than here.

    sudo python bench/multihost_bench.py                  # 5 kills, 4 failovers, 30 dynos
    sudo python bench/multihost_bench.py --kills 5 --failovers 5 --upgrade-dynos 30

Needs root and iproute2. Prints a table and writes JSON to bench/results/multihost.json.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from dynomgr_bench import RESULTS, machine, percentile, write_report  # noqa: E402
from tests.e2e.harness import LoadLoop, copy_example, poll, shared_tmpdir  # noqa: E402
from tests.e2e.multihost import (CONTROLS, HOSTS, ROUTERS, VMS, MultiHost, Timings,  # noqa: E402
                                 running_platform)
from tests.netns import Network, unavailable  # noqa: E402

APP = "bench-multihost"
TICK = 0.01  # how often state is read while timing (seconds)


def until(check, what: str, timeout: float = 120.0):
    """Poll `check` every TICK until truthy; its value (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(TICK)
    return value


class Bench:
    def __init__(self, mh: MultiHost) -> None:
        self.mh = mh
        self.api_host = CONTROLS[0]  # a control node that is up
        self.loads: list[LoadLoop] = []

    @property
    def api(self):
        return self.mh.api_of(self.api_host)

    def web(self) -> list[dict] | None:
        dynos = self.api.try_dynos(APP)
        return None if dynos is None else [d for d in dynos if d["type"] == "web"]

    def serving(self, count: int, vms: set[str]) -> bool:
        web = self.web()
        return web is not None and len(web) == count and all(
            d["state"] == "up" and d["serving"] and d["taking_out"] is None and d["vm"] in vms
            for d in web)

    def agents_settled(self) -> bool:
        """Every agent runs exactly the web dynos the API places on its VM, all up: after a
        scale down the API drops a dyno before its agent has stopped it, and an agent upgraded
        then would hand over a dyno on its way out, which no new agent adopts."""
        web = self.web()
        if web is None:
            return False
        for vm in VMS:
            placed = {d["name"] for d in web if d["vm"] == vm}
            running = self.mh.vms[vm].dynos()
            if {d["name"] for d in running} != placed or any(d["state"] != "up" for d in running):
                return False
        return True

    def failures(self) -> int:
        return sum(load.result.failures for load in self.loads)

    def both_routers_at(self, revision: int) -> bool:
        return all(self.mh.router_revision(r) >= revision for r in ROUTERS)

    # --- a VM dies ---------------------------------------------------------------------------

    def kill_vm(self, count: int) -> dict:
        web = self.web()
        by_vm = {vm: sum(1 for d in web if d["vm"] == vm) for vm in VMS}
        dead = max(by_vm, key=by_vm.get)
        alive = set(VMS) - {dead}
        failed = self.failures()
        start = time.monotonic()
        self.mh.net[dead].kill_all()
        killed = time.monotonic()
        until(lambda: self.api.get(f"/vms/{dead}")["state"] == "lost", f"{dead} lost")
        lost = time.monotonic()
        until(lambda: self.serving(count, alive), f"{count} web dynos on {sorted(alive)}")
        moved = time.monotonic()
        revision = self.api.get("/status")["revision"]
        until(lambda: self.both_routers_at(revision), f"both routers at {revision}")
        routed = time.monotonic()
        row = {"vm": dead, "at": time.time() - (time.monotonic() - start),
               "dynos_moved": by_vm[dead], "kill_s": killed - start,
               "lost_s": lost - start, "serving_elsewhere_s": moved - start,
               "routers_s": routed - start, "failed_requests": self.failures() - failed}
        vm = self.mh.vms[dead]  # back for the next round, empty (nothing moves back)
        vm.agent = vm.start("dynomgr (back)")
        until(lambda: self.api.get(f"/vms/{dead}")["state"] != "lost", f"{dead} back")
        return row

    # --- the scheduling control node dies ----------------------------------------------------

    def fail_over(self, count: int, target: int) -> dict:
        leader = poll(lambda: self.mh.leader(self.api_host), "a leader")
        survivor = next(n for n in CONTROLS if n != leader)
        self.api_host = survivor
        failed = self.failures()
        start = time.monotonic()
        self.mh.net[leader].kill_all()
        until(lambda: self.mh.leader(survivor) == survivor, f"{survivor} to lead")
        leading = time.monotonic()
        self.mh.cli_of(survivor).ok("ps:scale", f"web={target}", "--app", APP)
        scaled = time.monotonic()  # the CLI's own start-up is in it: see cli_s
        until(lambda: self.serving(target, set(VMS)), f"{target} web dynos serving")
        done = time.monotonic()
        row = {"killed": leader, "at": time.time() - (time.monotonic() - start),
               "scale": f"{count}->{target}", "leader_s": leading - start,
               "scale_accepted_s": scaled - start, "scale_done_s": done - start,
               "cli_s": scaled - leading,
               "failed_requests": self.failures() - failed}
        self.mh.start_control(leader)  # back, as a standby
        return row

    # --- a standby control node dies ----------------------------------------------------------

    def standby_dies(self, count: int) -> dict:
        """SIGKILL of the node that does not schedule, then a scale down (a take-out)."""
        leader = poll(lambda: self.mh.leader(self.api_host), "a leader")
        standby = next(n for n in CONTROLS if n != leader)
        self.api_host = leader
        followers = self.mh.api_of(standby).get("/status")["route_followers"]
        failed = self.failures()
        start = time.monotonic()
        self.mh.net[standby].kill_all()
        self.mh.cli_of(leader).ok("ps:scale", f"web={count - 1}", "--app", APP)
        scaled = time.monotonic()
        until(lambda: self.serving(count - 1, set(VMS)), f"{count - 1} web dynos serving")
        done = time.monotonic()
        self.mh.start_control(standby)
        return {"killed": standby, "its_route_followers": followers,
                "scale": f"{count}->{count - 1}",
                "scale_accepted_s": scaled - start, "scale_done_s": done - start,
                "failed_requests": self.failures() - failed}

    # --- an agent upgrade --------------------------------------------------------------------

    def upgrade(self, name: str) -> dict:
        vm = self.mh.vms[name]
        before = {d["id"]: (d["name"], d["address"], d["restarts"]) for d in self.web()}
        pids = {d["name"]: d["pid"] for d in vm.dynos()}
        failed = self.failures()
        start = time.monotonic()
        assert vm.agent.stop(signal.SIGTERM) == 0  # started with --keep-dynos
        stopped = time.monotonic()
        launch = time.monotonic()
        vm.agent = vm.start("dynomgr (upgraded)")
        for dyno in pids:
            vm.agent.wait_for(rf"{APP} heroku\[{re.escape(dyno)}\]: Adopted by a new dyno manager")
        adopted = time.monotonic()
        after_pids = {d["name"]: d["pid"] for d in vm.dynos()}
        after = {d["id"]: (d["name"], d["address"], d["restarts"]) for d in self.web()}
        restarts = (sum(1 for n, p in pids.items() if after_pids.get(n) != p)
                    + len(vm.agent.matches(r"Starting process")))
        if restarts:  # what the new agent said, to see why
            print("\n".join(line for line in vm.agent.lines if "dynomgr:" in line
                            or "Starting process" in line or "Adopted" in line), file=sys.stderr)
        return {"vm": name, "dynos_on_vm": len(pids), "dyno_restarts": restarts,
                "api_unchanged": after == before, "hand_over_s": stopped - start,
                "adopt_from_launch_s": adopted - launch, "failed_requests": self.failures() - failed}


def summary(rows: list[dict], keys: tuple[str, ...]) -> dict:
    return {key: {"p50": percentile([r[key] for r in rows], 50),
                  "max": max((r[key] for r in rows), default=float("nan"))} for key in keys}


def run(args: argparse.Namespace) -> dict:
    timings = Timings()
    report = {"benchmark": "multihost", "date": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "machine": machine(), "timings": timings.__dict__,
        "hosts": list(HOSTS)}
    with running_platform(Network(list(HOSTS)), timings) as mh:
        bench = Bench(mh)
        mh.cli.ok("apps:create", APP, "--no-link")
        mh.cli.ok("deploy", str(copy_example("hello", shared_tmpdir("multihost-bench-"))),
                  "--app", APP)
        count = 6
        mh.cli.ok("ps:scale", f"web={count}", "--app", APP)
        until(lambda: bench.serving(count, set(VMS)), "6 web dynos", timeout=120)
        bench.loads = [LoadLoop(r, APP, clients=args.clients, max_requests=10_000_000,
                                max_seconds=args.max_seconds) for r in mh.router_clients()]
        for load in bench.loads:
            load.__enter__()
        try:
            kills = [bench.kill_vm(count) for _ in range(args.kills)]
            standbys = []  # first: each router still follows the node it started on
            for _ in range(args.standby_deaths):
                standbys.append(bench.standby_dies(count))
                count -= 1
            failovers = []
            for round_ in range(args.failovers):
                target = count + 1 if round_ % 2 == 0 else count - 1
                failovers.append(bench.fail_over(count, target))
                count = target
            mh.cli_of(bench.api_host).ok("ps:scale", f"web={args.upgrade_dynos}", "--app", APP)
            count = args.upgrade_dynos
            until(lambda: bench.serving(count, set(VMS)), f"{count} web dynos", timeout=300)
            until(bench.agents_settled, "every agent running only its placed dynos")
            fullest = max(VMS, key=lambda vm: len(mh.vms[vm].dynos()))
            upgrades = [bench.upgrade(fullest)]
        finally:
            results = [load.stop() for load in bench.loads]
        errors = [f"{name}: {line}" for name, router in mh.routers.items()
                  for line in router.lines if " code=H" in line]
        report.update({
            "clients_per_router": args.clients,
            "requests": sum(r.requests for r in results),
            "failed_requests": sum(r.failures for r in results),
            "outcomes": [dict(r.outcomes) for r in results],
            "router_errors": errors,  # the routers' own lines for each failed request
            "vm_death": {"runs": kills, **summary(kills, (
                "lost_s", "serving_elsewhere_s", "routers_s", "failed_requests"))},
            "leader_failover": {"runs": failovers, **summary(failovers, (
                "leader_s", "cli_s", "scale_accepted_s", "scale_done_s",
                "failed_requests"))},
            "standby_death": {"runs": standbys, **summary(standbys, (
                "scale_accepted_s", "scale_done_s", "failed_requests"))},
            "agent_upgrade": {"runs": upgrades},
        })
    return report


def print_table(report: dict) -> None:
    print(f"\nmultihost: {len(report['hosts'])} hosts, agent timeout "
          f"{report['timings']['agent_timeout']} s, heartbeat {report['timings']['heartbeat']} s; "
          f"{report['requests']} requests, {report['failed_requests']} failed")
    print(f"{'figure':44} {'p50':>8} {'max':>8}")
    for section, keys in (("vm_death", ("lost_s", "serving_elsewhere_s", "routers_s",
                                        "failed_requests")),
                          ("leader_failover", ("leader_s", "cli_s", "scale_accepted_s",
                                               "scale_done_s", "failed_requests")),
                          ("standby_death", ("scale_accepted_s", "scale_done_s",
                                             "failed_requests"))):
        for key in keys:
            figure = report[section][key]
            print(f"{section + ' ' + key:44} {figure['p50']:8.3f} {figure['max']:8.3f}")
    for run_ in report["agent_upgrade"]["runs"]:
        print(f"agent upgrade ({run_['dynos_on_vm']} dynos on {run_['vm']}): "
              f"{run_['dyno_restarts']} restarts, adopted {run_['adopt_from_launch_s']:.3f} s "
              f"after launch, {run_['failed_requests']} failed requests")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--failovers", type=int, default=4)
    parser.add_argument("--standby-deaths", type=int, default=1,
                        help="times the standby control node dies before a scale down (only "
                             "the first finds a router following it)")
    parser.add_argument("--upgrade-dynos", type=int, default=30,
                        help="web dynos on the app for the upgrade (a third on its VM)")
    parser.add_argument("--clients", type=int, default=1, help="client threads per router")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="the load stops after this long in any case")
    parser.add_argument("--output", type=Path, default=RESULTS / "multihost.json")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"multihost_bench: {reason}", file=sys.stderr)
        return 2
    report = run(args)
    print_table(report)
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
