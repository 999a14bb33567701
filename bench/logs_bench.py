"""Log stream: lines per second a control plane ingests, and tail latency, on SQLite and PostgreSQL.

Starts a real `dynomesh control` (and, for PostgreSQL, a throwaway cluster from the installed
server binaries), creates apps and a router token, then, on loopback:

- ingest: `--posters` clients post prebuilt batches of `--batch` router lines (spread over 4
  apps, as a router's flush would be) as fast as the control plane answers, for `--seconds`;
  reported: lines stored per second, and the control plane's CPU time per 1000 lines;
- tail latency: a `GET /apps/{app}/log?tail=true` client, and a sender posting one line every
  10 ms with its send time in it; latency is from just before the POST to the line arriving
  at the tail, over `--samples` lines, once with the control plane otherwise idle and once
  while the ingest posters run flat out on the other apps.

Bounded by --seconds and --samples. Prints a table and writes bench/results/logs.json.

    python bench/logs_bench.py [--seconds 5] [--posters 4] [--batch 1000] [--samples 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import stamp, write_result  # noqa: E402
from dynomesh import logline  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.controlplane.harness import ControlPlane  # noqa: E402
from tests.pgcluster import PostgresCluster, create_database, find_bindir  # noqa: E402

APPS = [f"bench-{n}" for n in range(4)]
TICKS = os.sysconf("SC_CLK_TCK")
# A typical router line's text (about 230 bytes with its timestamp).
ROUTER_TEXT = ('at=info method=GET path="/items/42?page=2" host=bench-{n}.localhost '
               'request_id=0b4b8d1e-5c3a-4f7e-9a55-3c8f1b7e9d21 fwd="203.0.113.7" dyno=web.1 '
               'connect=0ms service=3ms status=200 bytes=1432 protocol=http')


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text()
    rest = fields[fields.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / TICKS


def router_batch(lines: int, apps: list[str]) -> bytes:
    """A POST /logs body of `lines` router lines spread over `apps`."""
    stamp = logline.rfc5424_timestamp()
    per_app = lines // len(apps)
    return b"".join(
        (f"@{app}\n" + "".join(f"{stamp} heroku[router]: {ROUTER_TEXT.format(n=n)}\n"
                                for _ in range(per_app))).encode()
        for n, app in enumerate(apps))


async def ingest(session: aiohttp.ClientSession, token: str, posters: int, batch: int,
                 seconds: float, stop: asyncio.Event | None = None,
                 apps: list[str] = APPS) -> dict:
    body = router_batch(batch, apps)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    stored = refused = 0
    deadline = time.perf_counter() + seconds

    async def poster() -> None:
        nonlocal stored, refused
        while time.perf_counter() < deadline and not (stop and stop.is_set()):
            async with session.post("/logs", data=body, headers=headers) as response:
                answer = await response.read()
                if response.status == 200:
                    stored += json.loads(answer)["accepted"]
                else:
                    refused += 1  # 503: the queue is full; a shipper would try again

    began = time.perf_counter()
    await asyncio.gather(*(poster() for _ in range(posters)))
    elapsed = time.perf_counter() - began
    return {"lines": stored, "seconds": round(elapsed, 2),
            "lines_per_s": round(stored / elapsed), "refused_posts": refused}


async def tail_latency(session: aiohttp.ClientSession, user: str, token: str,
                       samples: int) -> dict:
    """Latency from POST to tail, one line every 10 ms."""
    async with session.get(f"/apps/{APPS[0]}/log", params={"tail": "true", "lines": "1"},
                           headers={"Authorization": f"Bearer {user}",
                                    "Accept": "application/x-ndjson"},
                           timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as tail:
        assert tail.status == 200, await tail.text()
        latencies: list[float] = []
        ready = asyncio.Event()

        async def read() -> None:
            async for raw in tail.content:
                message = json.loads(raw)
                if message["type"] == "line" and message["text"].startswith("sent="):
                    latencies.append(time.time() - float(message["text"][5:]))
                    if len(latencies) >= samples:
                        return
                ready.set()

        reader = asyncio.create_task(read())
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
        try:
            for _ in range(samples):
                sent = time.time()
                body = f"@{APPS[0]}\n{logline.rfc5424_timestamp(sent)} heroku[router]: sent={sent!r}\n"
                async with session.post("/logs", data=body.encode(), headers=headers) as response:
                    await response.read()
                await asyncio.sleep(0.01)
            await asyncio.wait_for(reader, 30)
        finally:
            reader.cancel()
    latencies.sort()
    return {"samples": len(latencies), "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
            "max_ms": round(latencies[-1] * 1000, 2)}


async def run_backend(name: str, database_url: str | None, args) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"dynomesh-bench-logs-{name}-")) / "home"
    plane = ControlPlane(home, database_url=database_url)
    await asyncio.to_thread(plane.start)
    try:
        user = plane.token
        async with aiohttp.ClientSession(plane.url) as session:
            auth = {"Authorization": f"Bearer {user}"}
            for app in APPS:
                async with session.post("/apps", json={"name": app}, headers=auth) as response:
                    assert response.status == 201
            async with session.post("/tokens", json={"role": "router"}, headers=auth) as response:
                token = (await response.json())["token"]
            await ingest(session, token, args.posters, args.batch, 1.0)  # warm-up
            before = cpu_seconds(plane.process.pid)
            row = await ingest(session, token, args.posters, args.batch, args.seconds)
            cpu = cpu_seconds(plane.process.pid) - before
            row["cpu_ms_per_1000_lines"] = round(cpu / max(row["lines"], 1) * 1e6, 1)
            idle = await tail_latency(session, user, token, args.samples)
            stop = asyncio.Event()
            # The other apps busy, flat out; the tailed app's lines wait in the same queue
            # and commits (its tail client is not also reading the flood).
            load = asyncio.create_task(ingest(session, token, args.posters, args.batch,
                                              args.seconds * 100, stop, APPS[1:]))
            try:
                busy = await tail_latency(session, user, token, args.samples)
            finally:
                stop.set()
                busy_ingest = await load
    finally:
        plane.stop()
    return {"backend": name, "ingest": row, "tail_idle": idle, "tail_busy": busy,
            "ingest_during_busy_tail": busy_ingest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="ingest run length (5)")
    parser.add_argument("--posters", type=int, default=4, help="concurrent posters (4)")
    parser.add_argument("--batch", type=int, default=1000, help="lines per POST (1000)")
    parser.add_argument("--samples", type=int, default=1000, help="tail latency samples (1000)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "logs.json",
                        help="JSON file (default bench/results/logs.json)")
    args = parser.parse_args()
    rows = []
    wanted = args.backends.split(",")
    if "sqlite" in wanted:
        rows.append(asyncio.run(run_backend("sqlite", None, args)))
    bindir = find_bindir()
    if "postgresql" in wanted and bindir is not None:
        cluster = PostgresCluster(bindir, free_port()).start()
        try:
            name = asyncio.run(create_database(cluster.url))
            rows.append(asyncio.run(run_backend("postgresql", cluster.database_url(name), args)))
        finally:
            cluster.stop()
    elif "postgresql" in wanted:
        print("logs_bench: no PostgreSQL server binaries; skipping postgresql", file=sys.stderr)
    print(f"\n{'backend':<11} {'lines/s':>9} {'CPU ms/1000':>12} {'tail p50':>9} "
          f"{'tail p99':>9} {'busy p50':>9} {'busy p99':>9}  (ms)")
    for r in rows:
        print(f"{r['backend']:<11} {r['ingest']['lines_per_s']:>9} "
              f"{r['ingest']['cpu_ms_per_1000_lines']:>12} {r['tail_idle']['p50_ms']:>9} "
              f"{r['tail_idle']['p99_ms']:>9} {r['tail_busy']['p50_ms']:>9} "
              f"{r['tail_busy']['p99_ms']:>9}")
    result = {**stamp("logs", kernel=platform.release()),
              "settings": {key: value for key, value in vars(args).items() if key != "out"},
              "notes": "client, control plane and database share the machine's cores; the "
                       "PostgreSQL test cluster runs with fsync=off, SQLite with "
                       "synchronous=FULL",
              "rows": rows}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
