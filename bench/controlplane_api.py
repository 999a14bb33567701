"""Control-plane API throughput and latency on SQLite and PostgreSQL.

Starts a real `dynomesh control` (and, for PostgreSQL, a throwaway cluster from the installed
server binaries), then measures, on loopback:

- `write`: PATCH /apps/bench/config-vars, each a committed transaction that makes a release
  and bumps the revision (durable commit: SQLite WAL fsync, PostgreSQL WAL flush);
- `read`: GET /apps/bench (token check + one read transaction).

Bounded: a fixed number of requests per row. Prints a table and writes
bench/results/controlplane_api.json.

    python bench/controlplane_api.py [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import stamp, write_result  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.controlplane.harness import ControlPlane  # noqa: E402
from tests.pgcluster import PostgresCluster, create_database, find_bindir  # noqa: E402


async def measure(url: str, token: str, kind: str, requests: int, concurrency: int) -> dict:
    latencies: list[float] = []
    counter = iter(range(requests))
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url, headers=headers) as session:
        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                if kind == "write":
                    request = session.patch("/apps/bench/config-vars", json={"K": f"{kind}{i}"})
                else:
                    request = session.get("/apps/bench")
                async with request as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {"op": kind, "concurrency": concurrency, "requests": requests,
            "ops_per_s": round(requests / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2)}


async def run_backend(name: str, database_url: str | None, requests: int) -> list[dict]:
    home = Path(tempfile.mkdtemp(prefix=f"dynomesh-bench-{name}-")) / "home"
    plane = ControlPlane(home, database_url=database_url)
    await asyncio.to_thread(plane.start)
    rows = []
    try:
        async with aiohttp.ClientSession(plane.url, headers={
                "Authorization": f"Bearer {plane.token}"}) as session:
            async with session.post("/apps", json={"name": "bench"}) as response:
                assert response.status == 201
        for kind, concurrency in (("write", 1), ("write", 8), ("read", 1), ("read", 8)):
            row = await measure(plane.url, plane.token, kind, requests, concurrency)
            rows.append({"backend": name, **row})
    finally:
        plane.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "controlplane_api.json",
                        help="JSON file (default bench/results/controlplane_api.json)")
    args = parser.parse_args()
    rows = asyncio.run(run_backend("sqlite", None, args.requests))
    bindir = find_bindir()
    if bindir is not None:
        cluster = PostgresCluster(bindir, free_port()).start()
        try:
            name = asyncio.run(create_database(cluster.url))
            rows += asyncio.run(run_backend("postgresql", cluster.database_url(name),
                                            args.requests))
        finally:
            cluster.stop()
    header = f"{'backend':<11} {'op':<6} {'conc':>4} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['backend']:<11} {r['op']:<6} {r['concurrency']:>4} {r['ops_per_s']:>8} "
              f"{r['p50_ms']:>8} {r['p99_ms']:>8}")
    result = {**stamp("controlplane_api"),
              "notes": "PostgreSQL test cluster runs with fsync=off; SQLite with synchronous=FULL",
              "rows": rows}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
