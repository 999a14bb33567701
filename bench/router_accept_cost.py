#!/usr/bin/env python3
"""CPU per accepted connection: the router's listener (router/acceptor.py) beside uvloop's server.

    python bench/router_accept_cost.py                  # 1500 connections, 3 bursts each

A burst of client connections is made (blocking connects on loopback: the kernel completes them
and they wait in the accept queue), then the loop runs until every one has reached its
protocol's connection_made. Measured: the process's CPU time per connection, the loop turns it
took, and the growth of its resident memory per connection (both ends are in this process, so
only the difference between the two ways means something). uvloop's server accepts in C, one
connection per turn (libuv); the listener accepts them all in one turn from Python and sets each
up through `connect_accepted_socket`. Each burst runs in a process of its own. Run it pinned
(`taskset -c 0`) on a quiet core for steadier figures. Writes
`bench/results/router-accept-cost-<UTC time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import uvloop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from router.acceptor import Acceptor, bind  # noqa: E402


class Counted(asyncio.Protocol):
    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Counted.made += 1


async def burst(kind: str, connections: int) -> dict:
    loop = asyncio.get_running_loop()
    if kind == "uvloop server":
        server = await loop.create_server(Counted, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
        close = server.close
    else:
        sock = bind("127.0.0.1", 0, 4096, False)[0]
        port = sock.getsockname()[1]
        listener = Acceptor(loop, sock, Counted)
        listener.start()
        close = listener.close
    gc.collect()
    resident = rss()
    # The loop does not run while these connect: they all wait to be accepted.
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    Counted.made = 0
    cpu = time.process_time()
    turns = 0
    while Counted.made < connections and turns < 100 * connections:  # bounded
        turns += 1
        await asyncio.sleep(0)
    cpu = time.process_time() - cpu
    gc.collect()
    resident = rss() - resident
    for client in clients:
        client.close()
    close()
    return {"accept": kind, "connections": connections, "turns": turns,
            "cpu_us_per_connection": round(cpu / connections * 1e6, 1),
            "rss_bytes_per_connection": resident // connections}


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1500, help="per burst (1500)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts of each kind (3)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a burst of this kind, as JSON
    parser.add_argument("--out", type=Path,
                        help="JSON file (default bench/results/router-accept-cost-*.json)")
    args = parser.parse_args()
    wanted = args.connections * 2 + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    if args.one:  # one burst in this fresh process (resident memory only grows)
        print(json.dumps(uvloop.run(burst(args.one, args.connections))))
        return 0
    rows = [json.loads(subprocess.run(
                [sys.executable, __file__, "--one", kind, "--connections", str(args.connections)],
                capture_output=True, text=True, check=True, timeout=300).stdout)
            for _ in range(args.rounds) for kind in ("uvloop server", "listener")]
    print(f"{'accept':14} {'connections':>11} {'turns':>6} {'CPU µs/connection':>18} "
          f"{'RSS B/connection':>17}")
    for row in rows:
        print(f"{row['accept']:14} {row['connections']:11d} {row['turns']:6d} "
              f"{row['cpu_us_per_connection']:18.1f} {row['rss_bytes_per_connection']:17d}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or REPO / "bench" / "results" / f"router-accept-cost-{stamp}.json"
    out.write_text(json.dumps({"rounds": rows}, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
