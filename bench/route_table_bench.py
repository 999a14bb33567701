#!/usr/bin/env python3
"""The routing table at a million host names: lookups, memory, snapshot stalls, deltas.

    python bench/route_table_bench.py                        # 10 apps vs 100 000 apps x 10 hosts
    python bench/route_table_bench.py --apps 20000 --lookups 100000 --max-seconds 120

One process, no sockets. Two tables are built from a routes document (`parse_routes`, then
`RouteTable.from_document`): a small one of 10 apps and a large one of `--apps` apps, each app
with `--hosts-per-app` host names (its default name, custom domains and one `*.` wildcard) and
three dynos. Measured:

* lookup ns: `table.by_host[host]` — what `Exchange.dispatch` does for an exact host — for
  `--lookups` hosts drawn at random from the table, each a fresh bytes object (as httptools
  hands the router: its hash not yet computed); the median of `--repeat` runs, for both tables,
  and their ratio. A random host of a million is the worst case for the CPU caches; real
  traffic is skewed towards fewer hosts. What that costs a whole request: the extra ns over
  the µs per request of bench/router_path.py (the router's request path without sockets, one
  app, `--path-iterations` requests, median of 3), as a ratio to the small table's.
* bytes per host: every object the large table holds (its dicts, their keys, the entries and
  everything they refer to, each counted once by `sys.getsizeof`) divided by the host names;
  and the RSS a fresh process grows by when it loads the same table from a `--routes` file
  the way `dynomesh router --routes` does (`RoutesFile.load`, the decoded JSON freed, then
  `malloc_trim`), divided by the host names: that one includes the allocator's overhead and
  what fragmentation the decoding left behind.
* loop stall: a `Router` and its `RouteFeed` take the large table as a feed snapshot line
  through `RouteFeed.line` (the real apply path: sliced decoding, parsing and building, the
  swap, the old table retired) while a task on the same uvloop loop ticks every 1 ms; the
  longest gap between ticks is the longest a request could have waited. Twice: the first
  snapshot (no table yet), then a second one in which every entry changed (build, swap,
  rebinding the backends of the `--served-apps` apps that had served requests, and freeing
  the first table).
* delta µs: one-app delta lines through `RouteFeed.line` (decode, `apply_delta`, `install`),
  and `RouteTable.apply_delta` alone, on the small and the large table.

Bounded: by the counts given and by --max-seconds (phases not started in time are skipped).
Prints a table and writes bench/results/route-table-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import uvloop  # noqa: E402

from router.config import Endpoint, RouterConfig  # noqa: E402
from router.feed import RouteFeed, RouteFeedConfig  # noqa: E402
from router.routes import parse_app, parse_routes  # noqa: E402
from router.server import Router  # noqa: E402
from router.source import RoutesFile  # noqa: E402
from router.table import RouteTable  # noqa: E402
from router import tableload  # noqa: E402
from router_path import git_revision  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def entry(index: int, hosts: int, generation: int = 0) -> dict:
    """App `index`: its default name, hosts - 2 custom domains, one wildcard; three dynos."""
    names = [f"app{index}.dynomesh.test"]
    names += [f"www{j}.customer{index}.example.com" for j in range(max(0, hosts - 2))]
    names.append(f"*.app{index}.example.net")
    return {"name": f"app{index}", "hosts": names[:hosts], "state": "running",
            "maintenance": False,
            "dynos": [{"name": f"web.{d}",
                       "address": f"10.{index % 250}.{index // 250 % 250}.{d}:{20000 + generation * 10 + d}"}
                      for d in range(1, 4)]}


def document(apps: int, hosts: int, generation: int = 0) -> dict:
    return {"revision": 1 + generation, "apps": [entry(i, hosts, generation) for i in range(apps)]}


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# -- lookups ---------------------------------------------------------------------------------

def lookup_ns(table: RouteTable, lookups: int, repeat: int, rng: random.Random) -> float:
    """Median ns per `by_host[host]` of a random exact host, each probe a fresh bytes object."""
    keys = list(table.by_host)
    samples = []
    for _ in range(repeat):
        # bytes(bytearray(...)): a new object whose hash is not cached, like a parsed header.
        probes = [bytes(bytearray(keys[rng.randrange(len(keys))])) for _ in range(lookups)]
        by_host = table.by_host
        start = time.perf_counter()
        for host in probes:
            by_host[host]
        elapsed = time.perf_counter() - start
        empty = time.perf_counter()
        for host in probes:
            pass
        elapsed -= time.perf_counter() - empty  # the loop itself, not the lookup
        samples.append(elapsed / lookups * 1e9)
    return statistics.median(samples)


# -- memory ----------------------------------------------------------------------------------

def table_bytes(table: RouteTable) -> int:
    """Every object the table holds, each counted once (interned singletons left out)."""
    seen: set[int] = set()
    total = 0
    shared = {id(None), id(True), id(False)}

    def count(obj) -> bool:
        nonlocal total
        if id(obj) in seen or id(obj) in shared or (type(obj) is int and -5 <= obj <= 256):
            return False
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        return True

    for mapping in (table._exact, table._wildcard, table._apps):
        count(mapping)
        for key in mapping:
            count(key)
    for route in table._apps.values():
        if not count(route):
            continue
        count(route.name)
        count(route.hosts)
        for host in route.hosts:
            count(host)
        count(route.dynos)
        for dyno in route.dynos:
            if count(dyno):
                count(dyno.name)
                count(dyno.host)
                count(dyno.port)
        if route.request_timeout is not None:
            count(route.request_timeout)
    return total


def rss_child(path: Path) -> None:
    """In a fresh process: the RSS growth of loading `path` as `dynomesh router --routes` does."""
    gc.collect()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    before = rss_bytes()
    table = RoutesFile(path).load()
    tableload.keep_out_of_collections()
    gc.collect()
    libc.malloc_trim(0)  # give back what the decoded document used, as far as it can be
    after = rss_bytes()
    print(json.dumps({"hosts": table.hosts, "rss_before": before, "rss_after": after}))


def rss_per_host(apps: int, hosts: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "routes.json"
        path.write_text(json.dumps(document(apps, hosts)))
        done = subprocess.run([sys.executable, __file__, "--rss-child", str(path)],
                              capture_output=True, text=True, timeout=600, check=True)
    figures = json.loads(done.stdout)
    figures["rss_growth_per_host"] = round(
        (figures["rss_after"] - figures["rss_before"]) / figures["hosts"], 1)
    return figures


# -- the real apply path, with a loop-lag probe ----------------------------------------------

class LagProbe:
    """A task ticking every 1 ms; the longest gap between two ticks is the longest stall."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.001)
            now = loop.time()
            self.gaps.append(now - last)
            last = now

    async def stop(self) -> dict:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        gaps = sorted(self.gaps) or [0.0]
        return {"max_stall_ms": round(gaps[-1] * 1000, 2),
                "p99_gap_ms": round(gaps[int(len(gaps) * 0.99)] * 1000, 2),
                "ticks": len(gaps), "gaps_over_50ms": sum(g > 0.05 for g in gaps)}


async def timed_line(feed: RouteFeed, line: bytes) -> dict:
    probe = LagProbe()
    probe.start()
    await asyncio.sleep(0.02)  # the probe's first ticks
    start = time.perf_counter()
    await feed.line(line)
    seconds = time.perf_counter() - start
    await asyncio.sleep(0.02)
    figures = await probe.stop()
    figures["apply_seconds"] = round(seconds, 2)
    return figures


async def through_the_feed(apps: int, hosts: int, deltas: int, served: int) -> dict:
    """Two snapshots and `deltas` one-app deltas through RouteFeed.line, on this loop."""
    router = Router(RouterConfig(listen=Endpoint("127.0.0.1", 0), admin=None), sinks=[],
                    rng=random.Random(1))
    feed = RouteFeed(router, RouteFeedConfig(("http://control.invalid",), "bench"))
    result: dict = {"apps": apps, "hosts": apps * hosts}
    for generation in (0, 1):
        doc = document(apps, hosts, generation)
        line = json.dumps({"type": "snapshot", **doc}).encode()
        del doc
        gc.collect()
        result["snapshot_bytes"] = len(line)
        feed.connected("http://control.invalid")  # each snapshot opens a connection
        rss_before = rss_bytes()
        figures = await timed_line(feed, line)
        del line
        figures["rss_growth_bytes"] = rss_bytes() - rss_before
        result["first_snapshot" if generation == 0 else "second_snapshot"] = figures
        assert router.table.revision == 1 + generation and router.table.hosts == apps * hosts
        if generation == 0:  # these apps have served requests: each has a bound backend
            for index in range(min(served, apps)):
                router.backends.get(router.table.app(f"app{index}"))
    middle = apps // 2
    lines = [json.dumps({"type": "delta", "revision": 10 + i, "removed": [],
                         "apps": [entry(middle, hosts, 5 + i % 2)]}).encode()
             for i in range(deltas)]
    samples = []
    for line in lines:
        start = time.perf_counter()
        await feed.line(line)
        samples.append(time.perf_counter() - start)
    assert router.table.revision == 9 + deltas
    result["delta_line_us"] = round(statistics.median(samples) * 1e6, 1)
    return result


def apply_delta_us(table: RouteTable, hosts: int, deltas: int) -> float:
    middle = len(table) // 2
    routes = [parse_app(entry(middle, hosts, 7 + i % 2), "apps[0]") for i in range(deltas)]
    samples = []
    for i, route in enumerate(routes):
        start = time.perf_counter()
        table.apply_delta([route], (), 100 + i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=100_000, help="apps in the large table")
    parser.add_argument("--small-apps", type=int, default=10, help="apps in the small table")
    parser.add_argument("--hosts-per-app", type=int, default=10)
    parser.add_argument("--lookups", type=int, default=200_000, help="lookups per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed lookup runs (median)")
    parser.add_argument("--deltas", type=int, default=200, help="one-app deltas timed (median)")
    parser.add_argument("--served-apps", type=int, default=10_000,
                        help="apps with a bound backend when the second snapshot comes (10000)")
    parser.add_argument("--path-iterations", type=int, default=50_000,
                        help="requests per router_path.py run (0: skip that figure)")
    parser.add_argument("--max-seconds", type=float, default=900,
                        help="phases not started within this are skipped (default 900)")
    parser.add_argument("--label", default="", help="a note stored with the results")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/"
                                                 "route-table-<UTC time>.json)")
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)  # the RSS process
    args = parser.parse_args()
    if args.rss_child is not None:
        rss_child(args.rss_child)
        return 0
    if args.hosts_per_app < 2:
        parser.error("--hosts-per-app: at least 2 (a name and a wildcard)")
    started = time.monotonic()
    rng = random.Random(11)
    results: dict = {"benchmark": "route_table", "label": args.label,
                     "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "revision": git_revision(),
                     "machine": {"python": platform.python_version(),
                                 "platform": platform.platform(), "cpus": os.cpu_count(),
                                 "load_average_at_start": os.getloadavg()},
                     "parameters": vars(args) | {"out": str(args.out) if args.out else None},
                     "skipped": []}

    def in_time(phase: str) -> bool:
        if time.monotonic() - started < args.max_seconds:
            return True
        results["skipped"].append(phase)
        print(f"route_table_bench: out of time, skipping {phase}", file=sys.stderr)
        return False

    tables = {}
    for name, apps in (("small", args.small_apps), ("large", args.apps)):
        doc = document(apps, args.hosts_per_app)
        start = time.perf_counter()
        parsed = parse_routes(doc)
        parsed_at = time.perf_counter()
        table = RouteTable.from_document(parsed)
        built_at = time.perf_counter()
        del doc, parsed
        gc.collect()
        gc.freeze()  # as the router keeps its tables (router/tableload.py)
        tables[name] = table
        results[name] = {"apps": apps, "hosts": table.hosts,
                         "parse_seconds": round(parsed_at - start, 2),
                         "build_seconds": round(built_at - parsed_at, 2)}
        print(f"built the {name} table: {apps} apps, {table.hosts} hosts "
              f"(parse {parsed_at - start:.1f} s, build {built_at - parsed_at:.1f} s)",
              file=sys.stderr)

    for name, table in tables.items():
        results[name]["lookup_ns"] = round(lookup_ns(table, args.lookups, args.repeat, rng), 1)
        results[name]["table_bytes"] = table_bytes(table)
        results[name]["bytes_per_host"] = round(results[name]["table_bytes"] / table.hosts, 1)
        results[name]["apply_delta_us"] = round(
            apply_delta_us(table, args.hosts_per_app, args.deltas), 2)
    results["lookup_ratio"] = round(results["large"]["lookup_ns"] / results["small"]["lookup_ns"],
                                    3)
    del tables
    gc.unfreeze()
    gc.collect()

    if args.path_iterations and in_time("request path µs"):
        sys.path.insert(0, str(ROOT / "bench"))
        import router_path

        samples = router_path.microseconds(args.path_iterations, 3, warmup=router_path.CHUNK)
        path_us = statistics.median(samples)
        extra_us = (results["large"]["lookup_ns"] - results["small"]["lookup_ns"]) / 1000
        results["request_path_us"] = round(path_us, 3)
        results["per_request_ratio"] = round((path_us + extra_us) / path_us, 4)

    if in_time("rss of a process loading the large table"):
        results["large"]["rss"] = rss_per_host(args.apps, args.hosts_per_app)

    loop = uvloop.new_event_loop()
    try:
        for name, apps in (("small", args.small_apps), ("large", args.apps)):
            if in_time(f"feed apply ({name})"):
                print(f"applying {name} snapshots through the feed ...", file=sys.stderr)
                results[name]["feed"] = loop.run_until_complete(
                    through_the_feed(apps, args.hosts_per_app, args.deltas, args.served_apps))
                gc.unfreeze()
                gc.collect()
    finally:
        loop.close()
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["seconds"] = round(time.monotonic() - started, 1)

    small, large = results["small"], results["large"]
    rows = [("", f"{small['apps']} apps", f"{large['apps']} apps"),
            ("hosts", small["hosts"], large["hosts"]),
            ("lookup ns (by_host, random host)", small["lookup_ns"], large["lookup_ns"]),
            ("table bytes per host", small["bytes_per_host"], large["bytes_per_host"]),
            ("RSS growth per host (fresh process, --routes)", "",
             large.get("rss", {}).get("rss_growth_per_host", "skipped")),
            ("apply_delta µs (one app)", small["apply_delta_us"], large["apply_delta_us"])]
    for key, label in (("first_snapshot", "first snapshot"), ("second_snapshot", "second snapshot")):
        if "feed" in small and "feed" in large:
            rows.append((f"{label}: max stall ms", small["feed"][key]["max_stall_ms"],
                         large["feed"][key]["max_stall_ms"]))
            rows.append((f"{label}: apply s", small["feed"][key]["apply_seconds"],
                         large["feed"][key]["apply_seconds"]))
    if "feed" in small and "feed" in large:
        rows.append(("delta line through RouteFeed.line µs", small["feed"]["delta_line_us"],
                     large["feed"]["delta_line_us"]))
    width = max(len(str(r[0])) for r in rows)
    for label, a, b in rows:
        print(f"{label:<{width}} | {a!s:>12} | {b!s:>12}")
    print(f"lookup ratio (large / small): {results['lookup_ratio']}")
    if "per_request_ratio" in results:
        print(f"per request: {results['request_path_us']} µs on the request path; with the "
              f"large table's lookup, x{results['per_request_ratio']}")
    out = args.out or RESULTS / f"route-table-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
