#!/usr/bin/env python3
"""The routing table's size under real load: the same traffic through a 10-app and a 100 000-app
table (1 000 000 host names), CPU per request as router_bench.py measures it.

    python bench/route_table_wrk.py                     # 3 interleaved rounds, 8 s each
    python bench/route_table_wrk.py --runs 1 --duration 5 --apps 20000

Both routers get the same load: wrk (50 keep-alive connections, on the load core) asks for a
random host of the same 10 apps (10 hosts each), so what differs is only the table the router
holds: 10 apps and 100 hosts, or those 10 among `--apps` apps of 10 hosts each. The 1M-host
routes file is written once and loaded by the router at start (about 10 s). CPU = the router's
utime+stime ÷ requests. route_table_bench.py measures the table's parts (lookups, memory,
snapshot stalls, deltas) without sockets; this measures the whole request on sockets.

Writes bench/results/route-table-wrk-<UTC time>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_bench import (LOAD_CORE, PROXY_CORE, RESULTS, Backend, cpu_seconds,  # noqa: E402
                          free_port, git_revision, process_tree, raise_open_files_limit,
                          stop_group, wait_for_port)

HOT_APPS, HOSTS_PER_APP = 10, 10


def host(app: int, index: int) -> str:
    return f"h{index}.app{app}.example.com"


def routes_file(path: Path, apps: int, backend: int) -> Path:
    """`apps` apps of HOSTS_PER_APP hosts each, every one with one dyno: the backend."""
    dyno = [{"name": "web.1", "address": f"127.0.0.1:{backend}"}]
    with path.open("w") as out:
        out.write('{"apps": [')
        for app in range(apps):
            entry = {"name": f"app{app}", "hosts": [host(app, i) for i in range(HOSTS_PER_APP)],
                     "state": "running", "dynos": dyno}
            out.write(("," if app else "") + json.dumps(entry))
        out.write("]}")
    return path


def wrk_script(path: Path) -> Path:
    """Each request to a random host of the hot apps (the same for both tables)."""
    path.write_text(
        "math.randomseed(7)\n"
        "request = function()\n"
        f"  local app = math.random(0, {HOT_APPS - 1})\n"
        f"  local index = math.random(0, {HOSTS_PER_APP - 1})\n"
        "  return wrk.format('GET', '/', {Host = 'h' .. index .. '.app' .. app .. "
        "'.example.com'})\n"
        "end\n")
    return path


def run_wrk(port: int, seconds: float, connections: int, script: Path) -> dict:
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s",
            "--timeout", "10s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    requests = int(out.split(" requests in ")[0].split()[-1])
    errors = sum(int(line.split(":")[1]) for line in out.splitlines()
                 if line.strip().startswith("Non-2xx"))
    return {"requests": requests, "non_2xx": errors}


def measure(routes: Path, work: Path, args, script: Path) -> dict:
    port = free_port()
    argv = [sys.executable, "-m", "dynomesh", "router", "--listen", f"127.0.0.1:{port}",
            "--routes", str(routes)]
    proc = subprocess.Popen(["taskset", "-c", PROXY_CORE, *argv], stdout=subprocess.DEVNULL,
                            stderr=open(work / "router.stderr", "ab"), start_new_session=True)
    try:
        wait_for_port(port, proc, timeout=120.0)  # a 1M-host routes file loads first
        run_wrk(port, 2, args.connections, script)  # warm up: the hot apps' pools
        pids = process_tree(proc.pid)
        before = cpu_seconds(pids)
        result = run_wrk(port, args.duration, args.connections, script)
        cpu = cpu_seconds(pids) - before
    finally:
        stop_group(proc, 20)
    return {**result, "cpu_us_per_request": round(cpu / result["requests"] * 1e6, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=100_000, help="apps in the large table")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--out", type=Path,
                        help="JSON file (default bench/results/route-table-wrk-*.json)")
    args = parser.parse_args()
    raise_open_files_limit()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dynomesh-route-wrk-") as tmp:
        work = Path(tmp)
        script = wrk_script(work / "hosts.lua")
        with Backend(work) as backend:
            tables = {f"{HOT_APPS} apps": routes_file(work / "small.json", HOT_APPS, backend.port),
                      f"{args.apps} apps": routes_file(work / "large.json", args.apps,
                                                       backend.port)}
            for run in range(args.runs):
                for label, routes in tables.items():
                    print(f"run {run + 1}/{args.runs}: {label} ({args.duration:g} s)...",
                          file=sys.stderr, flush=True)
                    rows.append({"table": label, "run": run + 1,
                                 **measure(routes, work, args, script)})
    medians = {label: statistics.median(r["cpu_us_per_request"] for r in rows
                                        if r["table"] == label) for label in dict.fromkeys(
                                            r["table"] for r in rows)}
    small, large = medians.values()
    print(f"\n{'table':<14} {'run':>3} {'requests':>9} {'CPU us/req':>10} {'non-2xx':>8}")
    for r in rows:
        print(f"{r['table']:<14} {r['run']:>3} {r['requests']:>9} "
              f"{r['cpu_us_per_request']:>10} {r['non_2xx']:>8}")
    print(f"median CPU per request: {small:.2f} us (10 apps), {large:.2f} us ({args.apps} apps):"
          f" x{large / small:.3f}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or RESULTS / f"route-table-wrk-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "route_table_wrk", "revision": git_revision(), "apps": args.apps,
        "hosts": args.apps * HOSTS_PER_APP, "hot_apps": HOT_APPS,
        "connections": args.connections, "duration_s": args.duration, "runs": rows,
        "median_cpu_us_per_request": medians, "ratio": round(large / small, 4),
        "load_average_at_end": os.getloadavg()}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
