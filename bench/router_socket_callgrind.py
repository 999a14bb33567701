#!/usr/bin/env python3
"""The router's own instructions per request over real sockets, counted by callgrind.

    python bench/router_socket_callgrind.py                       # this checkout
    python bench/router_socket_callgrind.py --tree ../other-checkout --label "before"

wrk's CPU figures swing by 10-20 % from run to run on a shared VM, too much to see a change of
a few per cent. This runs a `dynomesh router --routes` process (from `--tree`, default this
checkout) under valgrind's callgrind, sends it N keep-alive GETs over 50 connections from a
small asyncio client, through to an nginx backend, and stops it. Two runs (N = 1000 and 6000)
are subtracted, so start-up cancels out: what remains is the user-space instructions the
router spends per request (Python, uvloop, httptools; not the kernel's share, which the same
two reads and two writes per request make equal between versions). Deterministic to well
under 1 %. Needs `valgrind` and `nginx`.

`--affinity`: the app has session affinity (docs/routes-format.md); each connection's first
request gets the cookie, and every later one sends it back (the pinned path).

Output: a line with the figure and bench/results/router-socket-callgrind-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_bench import (REPO, RESULTS, Backend, free_port, git_revision,  # noqa: E402
                          wait_for_port)

REQUEST = b"GET / HTTP/1.1\r\nHost: app1.localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
CONNECTIONS = 50


# A fixed session affinity signing key for --affinity (32 bytes, base64url).
AFFINITY_KEYS = [{"id": "bench", "secret": "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmU"}]


async def _one_connection(port: int, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = REQUEST
    for _ in range(count):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"\r\nContent-Length: (\d+)", head)
        await reader.readexactly(int(length.group(1)))
        pinned = re.search(rb"\r\nSet-Cookie: (dynomesh-session-affinity=[^;]+)", head)
        if pinned:  # --affinity: send the cookie back from now on
            request = REQUEST[:-2] + b"Cookie: " + pinned.group(1) + b"\r\n\r\n"
    writer.close()


async def _load(port: int, requests: int) -> None:
    per = requests // CONNECTIONS
    await asyncio.gather(*(_one_connection(port, per) for _ in range(CONNECTIONS)))


def instructions(tree: Path, work: Path, backend: int, requests: int,
                 affinity: bool = False) -> int:
    """Total instructions of a router process that answered `requests` requests."""
    routes = work / "routes.json"
    app = {"name": "app1", "hosts": ["app1.localhost"],
           "dynos": [{"name": "web.1", "address": f"127.0.0.1:{backend}"}]}
    document = {"apps": [app]}
    if affinity:
        app["session_affinity"] = True
        document["affinity_keys"] = AFFINITY_KEYS
    routes.write_text(json.dumps(document))
    port = free_port()
    out = work / f"callgrind-{requests}.out"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
         "dynomesh", "router", "--listen", f"127.0.0.1:{port}", "--admin", "off",
         "--routes", str(routes)],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, proc, timeout=120)
        asyncio.run(asyncio.wait_for(_load(port, requests), 600))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    summary = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    return int(summary.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=REPO, help="checkout whose router runs")
    parser.add_argument("--requests", default="1000,6000",
                        help="the two request counts subtracted (1000,6000)")
    parser.add_argument("--label", default="", help="a note stored with the result")
    parser.add_argument("--affinity", action="store_true",
                        help="the app has session affinity; clients send their cookie back")
    parser.add_argument("--out", type=Path,
                        help="JSON file (default bench/results/router-socket-callgrind-*.json)")
    args = parser.parse_args()
    low, high = (int(n) for n in args.requests.split(","))
    tree = args.tree.resolve()
    with tempfile.TemporaryDirectory(prefix="dynomesh-cg-") as tmp:
        work = Path(tmp)
        with Backend(work) as backend:
            first = instructions(tree, work, backend.port, low, args.affinity)
            second = instructions(tree, work, backend.port, high, args.affinity)
    per_request = (second - first) / (high - low)
    revision = git_revision(tree)
    print(f"{revision}: {per_request:,.0f} instructions per request (router process, user space,"
          f" real sockets; {low} and {high} requests)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = args.out or RESULTS / f"router-socket-callgrind-{stamp}.json"
    path.write_text(json.dumps({"benchmark": "router-socket-callgrind", "label": args.label,
                                "revision": revision, "affinity": args.affinity, "requests": [low, high],
                                "totals": [first, second],
                                "instructions_per_request": round(per_request)}, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
