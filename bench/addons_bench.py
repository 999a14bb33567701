"""PostgreSQL add-ons: how long `addons:create` and `addons:destroy` take through the API.

Starts a throwaway PostgreSQL cluster from the installed server binaries and a real
`dynomesh control` (SQLite store) whose add-on server it is, creates `--apps` apps, then, one
app after another, POSTs /apps/{app}/addons (the server's safety check, the advisory-lock
hold, store row, a SCRAM verifier, CREATE ROLE, CREATE DATABASE, grants, the public schema,
DATABASE_URL and a release) and later DELETEs each add-on (config var unset and a release, DROP
DATABASE ... WITH (FORCE), the role's holdings elsewhere, DROP ROLE). The cluster's own
databases are closed to PUBLIC first, as `dynomesh up` does (the provider refuses it
otherwise). Bounded: a fixed number of apps. Prints a table and writes
bench/results/addons.json.

    python bench/addons_bench.py [--apps 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import stamp, write_result  # noqa: E402
from bench.latency import summary  # noqa: E402

from tests.conftest import free_port  # noqa: E402
from tests.controlplane.harness import ControlPlane  # noqa: E402
from tests.pgcluster import PostgresCluster, find_bindir  # noqa: E402
from onebox.postgres import lock_down  # noqa: E402


async def timed(session: aiohttp.ClientSession, method: str, path: str, expect: int,
                **kwargs) -> tuple[float, dict]:
    started = time.perf_counter()
    async with session.request(method, path, **kwargs) as response:
        body = await response.json()
        assert response.status == expect, (response.status, body)
    return time.perf_counter() - started, body


async def run(plane: ControlPlane, apps: int) -> list[dict]:
    names = [f"bench-{i}" for i in range(apps)]
    created, destroyed = [], []
    async with aiohttp.ClientSession(plane.url, headers={
            "Authorization": f"Bearer {plane.token}"}) as session:
        for name in names:
            await timed(session, "POST", "/apps", 201, json={"name": name})
        addons = {}
        for name in names:
            took, body = await timed(session, "POST", f"/apps/{name}/addons", 201,
                                     json={"kind": "postgresql"})
            created.append(took)
            addons[name] = body["name"]
        for name in names:
            took, _ = await timed(session, "DELETE", f"/apps/{name}/addons/{addons[name]}", 200)
            destroyed.append(took)
    return [summary("create", created), summary("destroy", destroyed)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "addons.json",
                        help="JSON file (default bench/results/addons.json)")
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        print("no PostgreSQL server binaries: apt-get install postgresql", file=sys.stderr)
        return 1
    cluster = PostgresCluster(bindir, free_port()).start()
    try:
        asyncio.run(lock_down(cluster.url))
        home = Path(tempfile.mkdtemp(prefix="dynomesh-bench-addons-")) / "home"
        plane = ControlPlane(home, environ={"DYNOMESH_ADDONS_DATABASE_URL": cluster.url})
        plane.start()
        try:
            rows = asyncio.run(run(plane, args.apps))
        finally:
            plane.stop()
    finally:
        cluster.stop()
    header = f"{'op':<8} {'count':>5} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['op']:<8} {r['count']:>5} {r['p50_ms']:>8} {r['p90_ms']:>8} {r['max_ms']:>8}")
    result = {**stamp("addons"),
              "notes": "PostgreSQL test cluster (fsync=off; the admin trusted on loopback, apps' roles "
                       "by SCRAM), control plane on SQLite "
                       "(synchronous=FULL); one request at a time",
              "rows": rows}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
