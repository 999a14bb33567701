"""Pool grow time on moto: from a dyno that no VM has room for to its new VM's agent registering.

A control node (in-process, SQLite) runs the `ec2` pool against a real `moto_server` on
loopback; each VM holds one standard-1x dyno (512 MB), so every `ps:scale web=N+1` leaves one
dyno unplaced and the pool launches one VM for it. moto starts no machine: the test suite's
player (tests/controlplane/ec2pool.py) reads each instance's user-data back from EC2 and runs
its start script, as cloud-init would on a real instance. Per round it measures, from the
scale request:

* launched: RunInstances answered and the pool recorded the instance;
* agent started: the player ran the user-data's start script (stands in for an EC2 boot);
* registered: the new agent registered its VM (`PUT /vms/{vm}`);
* dyno up: the waiting dyno reported up on it.

    python bench/pool_bench.py               # 5 rounds
    python bench/pool_bench.py --rounds 10

Prints a table and writes JSON to bench/results/pool.json. On real EC2 the boot replaces the
player's near-zero start: see `ec2_reference` in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from controlplane.applog import StdoutAppLog  # noqa: E402
from controlplane.config import ControlConfig  # noqa: E402
from controlplane.node import ControlNode  # noqa: E402
from controlplane.pool.ec2 import Ec2Settings  # noqa: E402
from controlplane.pool.settings import PoolConfig  # noqa: E402
from controlplane.slugstore import open_slug_store  # noqa: E402
from controlplane.store import Store, open_database  # noqa: E402
from controlplane.store.models import Role  # noqa: E402
from dynomgr_bench import machine, percentile, write_report  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.controlplane.conftest import deploy_with  # noqa: E402
from tests.controlplane.ec2pool import AWS_ENV, MotoServer, VmPlayer, until  # noqa: E402
from tests.e2e.harness import shared_tmpdir  # noqa: E402

RESULTS = ROOT / "bench" / "results"
HELLO = {name: (ROOT / "examples" / "hello" / name).read_text()
         for name in ("Procfile", "web.py", "worker.py")}
STEPS = ("launched", "agent_started", "registered", "dyno_up")
# What AWS itself says a launch takes, for the note (moto has no boot to measure).
EC2_REFERENCE = {
    "aws_says": "It can take a few minutes to launch an EC2 instance; the actual time depends "
                "on the instance size and startup scripts (EC2 Auto Scaling predictive "
                "scaling, SchedulingBufferTime, whose default pre-launch is 300 s; ECS managed "
                "scaling also defaults an instance's warm-up to 300 s)",
    "source": "docs.aws.amazon.com: AutoScaling PredictiveScalingConfiguration."
              "SchedulingBufferTime; ECS ManagedScaling.instanceWarmupPeriod",
    "aws_default_budget_s": 300,
    # Not AWS's: one public measurement, for scale (github.com/brevdev/ec2-coldboot-research).
    "third_party_measured_s": {"pending_to_running": 16, "cold_launch_to_ssh": 25.8},
    "plus": "the install command (pip install dynomesh; none with an AMI that has it)",
}


class Bench:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.rows: list[dict] = []

    async def run(self) -> None:
        moto = MotoServer(free_port()).start()
        os.environ.update(AWS_ENV)
        home = Path(tempfile.mkdtemp(prefix="pool-bench-"))
        vms = shared_tmpdir("pool-bench-vms-")
        try:
            await self._run(moto, home, vms)
        finally:
            moto.stop()
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(vms, ignore_errors=True)

    async def _run(self, moto: MotoServer, home: Path, vms: Path) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = ControlConfig(home=home, listen_port=port, take_out_grace=0.2, pool=PoolConfig(
            provider="ec2", capacity_mb=512, max_vms=self.rounds + 1, reconcile_interval=0.5,
            idle_grace=3600.0, control_urls=(url,), ec2=Ec2Settings(
                endpoint_url=moto.url, region="us-east-1", image_id=await moto.an_ami(),
                instance_type="t3.small", install_command="true")))
        store = await Store.open(open_database(None, home=home))
        slugs = open_slug_store(config)
        await slugs.start()
        node = ControlNode(config, store, slugs, applog=StdoutAppLog(io.StringIO()))
        await node.start()
        runner = web.AppRunner(node.web_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        player = VmPlayer(store, moto, vms).start()
        token = (await store.tokens.create(Role.USER)).secret
        session = aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"})
        try:
            await self._rounds(session, store, player)
        finally:
            await session.close()
            await player.close()
            await node.close_feeds()
            await runner.cleanup()
            await node.stop()
            await store.close()
            await slugs.close()

    async def _rounds(self, session, store, player: VmPlayer) -> None:
        async def call(method, path, **kwargs):
            async with session.request(method, path, **kwargs) as response:
                body = await response.json()
                return response.status, body, response

        async def scale(web_count: int) -> None:
            status, body, _ = await call("PATCH", "/apps/hello/formation", json={
                "updates": [{"type": "web", "quantity": web_count}]})
            assert status == 200, body

        status, body, _ = await call("POST", "/apps", json={"name": "hello"})
        assert status == 201, body
        await deploy_with(call, "hello", HELLO)
        await scale(0)
        for n in range(1, self.rounds + 1):
            known = set((await store.pool.snapshot()).vms)
            started = time.time()
            await scale(n)
            row = await until(store, lambda: _new_row(store, known), "a launched VM", 120)
            launched = time.time()
            played = await until(store, lambda: _value(player.played.get(row.vm_id)),
                                 "the VM played", 120)
            await until(store, lambda: _registered(store, row.vm_id), "its agent", 120)
            registered = time.time()
            await until(store, lambda: _up(call, n), f"{n} dynos up", 120)
            self.rows.append({"round": n, "vm": row.vm_id, "launched": launched - started,
                              "agent_started": played.started_at - started,
                              "registered": registered - started, "dyno_up": time.time() - started})
            print(f"round {n}: " + ", ".join(f"{k} {self.rows[-1][k]:.2f}s" for k in STEPS),
                  flush=True)

    def report(self) -> dict:
        summary = {step: {"p50_s": round(percentile([r[step] for r in self.rows], 50), 3),
                          "max_s": round(max(r[step] for r in self.rows), 3)}
                   for step in STEPS}
        return {"bench": "pool_grow_on_moto", "rounds": self.rounds,
                "machine": {**machine(), "load_average_1m_at_end": os.getloadavg()[0]},
                "from": "ps:scale leaves one dyno unplaced", "summary": summary,
                "raw": self.rows, "ec2_reference": EC2_REFERENCE}


async def _new_row(store, known):
    for row in (await store.pool.snapshot()).pool:
        if row.vm_id not in known and row.instance_id:
            return row
    return None


async def _value(value):
    return value


async def _registered(store, vm_id: str) -> bool:
    return vm_id in (await store.pool.snapshot()).vms


async def _up(call, n: int) -> bool:
    _, dynos, _ = await call("GET", "/apps/hello/dynos")
    return len(dynos) == n and all(d["state"] == "up" for d in dynos)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS / "pool.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    bench = Bench(args.rounds)
    asyncio.run(bench.run())
    report = bench.report()
    print(f"\npool grow on moto, {args.rounds} rounds (seconds from the scale request)")
    print(f"{'step':<16}{'p50':>8}{'max':>8}")
    for step in STEPS:
        s = report["summary"][step]
        print(f"{step:<16}{s['p50_s']:>8.2f}{s['max_s']:>8.2f}")
    print("real EC2 adds its boot to 'agent_started' (AWS: 'a few minutes'; see ec2_reference)")
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
