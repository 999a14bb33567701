#!/usr/bin/env python3
"""The router's request path without sockets: the Python work per proxied request.

    python bench/router_path.py                          # both figures (callgrind if installed)
    python bench/router_path.py --iterations 200000 --repeats 5 --no-callgrind
    python bench/router_path.py --label "after: cheaper log line"
    python bench/router_path.py --no-callgrind --table-apps 100000 --hosts-per-app 10

The router's own objects — a `Router` with a `RouteTable` of one app and one dyno, a
`ClientConnection`, a pooled `UpstreamConnection` of that dyno — are driven by hand over
transports that only record what is written: the client connection is fed a keep-alive GET
(`REQUEST`), the dyno connection a small 200 response with Content-Length (`RESPONSE`), and so
on, request after request, the way wrk and the benchmark's nginx backend do it. No socket, no
event loop run, no system call: what is left is the work the router does in Python (and in
httptools) per request, which wrk on a shared VM cannot resolve to a few per cent.

Two figures:

* instructions per request, counted by valgrind's callgrind: the whole program run with
  `--cycles N1` and with `--cycles N2`, (I2 - I1) / (N2 - N1), so start-up and imports cancel
  out. Deterministic to about 0.1 % from one run to the next (PYTHONHASHSEED is fixed).
* µs per request by `time.perf_counter` over `--iterations` cycles, the median of `--repeats`
  runs: a second opinion, but noisy on a shared machine.

Every run checks what the dyno and the client received (exact bytes, apart from the request id
and X-Request-Start), that the dyno connection went back to the pool each time, and the log
lines and counters; a change that breaks the path fails here before it is timed. Log lines go
to a sink that keeps the last batch: they are formatted and buffered as in production, not
written anywhere.

With `--table-apps N` the router's table holds N apps of `--hosts-per-app` host names each (app1
among them; the requests still go to app1.localhost), frozen out of garbage collection as the
router keeps its tables: what a large table costs the path apart from the cache misses of
looking up a random host among many (`bench/route_table_bench.py` measures those).

Prints a table and writes bench/results/router-path-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvloop  # noqa: E402

from router.client import ClientConnection  # noqa: E402
from router.config import Endpoint, RouterConfig  # noqa: E402
from router.listener import Listener  # noqa: E402
from router.routes import parse_routes  # noqa: E402
from router.server import Router  # noqa: E402
from router.table import RouteTable  # noqa: E402
from router.upstream import UpstreamConnection  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PORT = 8080
CLIENT = ("127.0.0.1", 51234)
DYNO = ("127.0.0.1", 20001)

# What wrk sends (with a Host header and a few fields a real client adds), and what the
# benchmark's nginx backend answers.
REQUEST = (b"GET /hello HTTP/1.1\r\n"
           b"Host: app1.localhost\r\n"
           b"User-Agent: wrk/4.2.0\r\n"
           b"Accept: */*\r\n"
           b"Accept-Encoding: gzip\r\n"
           b"\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\n"
            b"Server: nginx/1.22.1\r\n"
            b"Date: Thu, 26 Nov 2026 12:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Length: 13\r\n"
            b"Connection: keep-alive\r\n"
            b"\r\n"
            b"Hello, world!")

# What must arrive: the rewritten request head at the dyno, the relayed response at the client.
UPSTREAM_HEAD = re.compile(
    rb"GET /hello HTTP/1\.1\r\n"
    rb"Host: app1\.localhost\r\n"
    rb"User-Agent: wrk/4\.2\.0\r\n"
    rb"Accept: \*/\*\r\n"
    rb"Accept-Encoding: gzip\r\n"
    rb"X-Request-Id: ([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})\r\n"
    rb"X-Forwarded-For: 127\.0\.0\.1\r\n"
    rb"X-Request-Start: \d{13}\r\n"
    rb"X-Forwarded-Proto: http\r\n"
    rb"X-Forwarded-Port: 8080\r\n"
    rb"Via: 1\.1 dynomesh\r\n"
    rb"\r\n")
CLIENT_RESPONSE = (b"HTTP/1.1 200 OK\r\n"
                   b"Server: nginx/1.22.1\r\n"
                   b"Date: Thu, 26 Nov 2026 12:00:00 GMT\r\n"
                   b"Content-Type: text/plain\r\n"
                   b"Content-Length: 13\r\n"
                   b"Via: 1.1 dynomesh\r\n"
                   b"\r\n"
                   b"Hello, world!")
LOG_LINE = re.compile(
    rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 heroku\[router\]: at=info method=GET "
    rb'path="/hello" host=app1\.localhost request_id=[0-9a-f-]{36} fwd="127\.0\.0\.1" '
    rb"dyno=web\.1 connect=0ms service=\d+ms status=200 bytes=13 protocol=http")

# Writes are checked and forgotten every CHUNK cycles (keeps memory flat over long runs).
CHUNK = 1000


class RecordingTransport:
    """The part of an asyncio transport the router's protocols use; writes are kept."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.written: list[bytes] = []
        # A bound list.append, like uvloop's write a C call with no Python frame: the path
        # measured is the router's alone.
        self.write = self.written.append
        # is_closing() is called per request; uvloop's is a C call too. Truthy once closed.
        self._closes: list[bool] = []
        self.is_closing = self._closes.__len__
        self.peer = peer
        self.reading = True

    @property
    def closed(self) -> bool:
        return bool(self._closes)

    def get_extra_info(self, name: str, default=None):
        return self.peer if name == "peername" else default

    def close(self) -> None:
        self._closes.append(True)

    def abort(self) -> None:
        self._closes.append(True)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._closes.append(True)


class LastBatchSink:
    """A log sink that keeps only the latest batch of lines and counts them all."""

    def __init__(self) -> None:
        self.lines = 0
        self.last: list[tuple[str | None, bytes]] = []

    def write_lines(self, records: list[tuple[str | None, bytes]]) -> None:
        self.lines += len(records)
        self.last = records


def routes_table(apps: int = 1, hosts_per_app: int = 1) -> RouteTable:
    """app1 (app1.localhost and more names) and `apps - 1` others, each with one dyno."""
    def names(index: int) -> list[str]:
        first = "app1.localhost" if index == 1 else f"app{index}.dynomesh.test"
        more = [f"www{j}.customer{index}.example.com" for j in range(hosts_per_app - 1)]
        return [first, *more]
    table = RouteTable.from_document(parse_routes({"revision": 1, "apps": [{
        "name": f"app{index}", "hosts": names(index),
        "dynos": [{"name": "web.1", "address": f"{DYNO[0]}:{DYNO[1]}"}]}
        for index in range(1, apps + 1)]}))
    if apps > 1:
        gc.collect()
        gc.freeze()  # as the router keeps a table (router/tableload.py)
    return table


class RequestPath:
    """One client connection and one pooled dyno connection of a real Router."""

    def __init__(self, table: RouteTable | None = None) -> None:
        config = RouterConfig(listen=Endpoint("127.0.0.1", PORT), admin=None)
        self.sink = LastBatchSink()
        router = self.router = Router(config, sinks=[self.sink], rng=random.Random(1))
        # What Router.start does besides binding the listener: the loop (for its clock; it is
        # never run) and the listener's forwarding rules.
        router.loop = uvloop.new_event_loop()
        router.now = router.loop.time()
        router.port = PORT
        router.plain = Listener(router, config.protocol, PORT, router.log)
        router.install(table if table is not None else routes_table())
        route = router.table.lookup(b"app1.localhost")
        self.backend = router.backends.get(route)
        self.pool = self.backend.pools[0]
        # A dyno connection opened earlier and pooled, as after wrk's warm-up.
        self.upstream = UpstreamConnection(self.pool, router)
        self.upstream_transport = RecordingTransport(DYNO)
        self.upstream.connection_made(self.upstream_transport)
        self.pool.give_back(self.upstream, router.now)
        self.client = ClientConnection(router)
        self.client_transport = RecordingTransport(CLIENT)
        self.client.connection_made(self.client_transport)
        self.done = 0

    def run(self, cycles: int) -> None:
        """`cycles` request/response exchanges, checked every CHUNK of them."""
        request_in = self.client.data_received
        response_in = self.upstream.data_received
        to_dyno = self.upstream_transport.written
        to_client = self.client_transport.written
        left = cycles
        while left:
            n = min(CHUNK, left)
            for _ in range(n):
                request_in(REQUEST)
                response_in(RESPONSE)
            self._check_writes(to_dyno, to_client, n)
            to_dyno.clear()
            to_client.clear()
            left -= n
            self.done += n

    def _check_writes(self, to_dyno: list[bytes], to_client: list[bytes], n: int) -> None:
        if len(to_dyno) != n or len(to_client) != n:
            raise SystemExit(f"router_path: {n} requests made {len(to_dyno)} writes to the dyno "
                             f"and {len(to_client)} to the client (one each expected)")
        ids = set()
        for data in (to_dyno[0], to_dyno[-1]):
            match = UPSTREAM_HEAD.fullmatch(data)
            if match is None:
                raise SystemExit(f"router_path: the dyno received an unexpected head:\n{data!r}")
            ids.add(match[1])
        if n > 1 and len(ids) != 2:
            raise SystemExit("router_path: two requests carried the same X-Request-Id")
        for data in (to_client[0], to_client[-1]):
            if data != CLIENT_RESPONSE:
                raise SystemExit(f"router_path: the client received unexpected bytes:\n{data!r}")

    def check_state(self) -> None:
        """After the cycles: everything back where a keep-alive connection leaves it."""
        router = self.router
        router.log_writer.flush()
        metrics = self.backend.metrics
        problems = []
        if self.pool.idle != [self.upstream] or self.upstream_transport.closed:
            problems.append("the dyno connection is not back in the pool")
        if self.pool.in_flight or metrics.in_flight:
            problems.append(f"in flight: pool {self.pool.in_flight}, app {metrics.in_flight}")
        if self.client.serving is not None or self.client_transport.closed:
            problems.append("the client connection is not idle and open")
        if not self.client_transport.reading:
            problems.append("reading from the client is paused")
        if metrics.statuses != {200: self.done}:
            problems.append(f"statuses counted: {metrics.statuses}, expected {{200: {self.done}}}")
        if self.sink.lines != self.done:
            problems.append(f"{self.sink.lines} log lines for {self.done} requests")
        elif self.sink.last and LOG_LINE.fullmatch(self.sink.last[-1][1]) is None:
            problems.append(f"unexpected log line: {self.sink.last[-1][1]!r}")
        if problems:
            raise SystemExit("router_path: " + "; ".join(problems))


def cycles_only(cycles: int, table: RouteTable | None = None) -> None:
    """The program callgrind counts: set up, run `cycles`, check."""
    path = RequestPath(table)
    path.run(cycles)
    path.check_state()


def microseconds(iterations: int, repeats: int, warmup: int,
                 table: RouteTable | None = None) -> list[float]:
    """µs per request of each of `repeats` runs (a fresh path each, warmed up first)."""
    samples = []
    for _ in range(repeats):
        path = RequestPath(table)
        path.run(warmup)
        start = time.perf_counter()
        path.run(iterations)
        elapsed = time.perf_counter() - start
        path.check_state()
        samples.append(elapsed / iterations * 1e6)
    return samples


def callgrind_totals(runs: list[int], table_args: list[str]) -> list[int]:
    """Instructions (Ir) of the whole program run with `--cycles n` under callgrind, for each
    n in `runs` (the runs go side by side)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONHASHSEED="0")
        outs = [Path(tmp) / f"callgrind.{i}" for i in range(len(runs))]
        procs = [subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, str(Path(__file__).resolve()), "--cycles", str(cycles),
             *table_args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for out, cycles in zip(outs, runs)]
        totals = []
        for proc, out in zip(procs, outs):
            _, stderr = proc.communicate(timeout=1800)
            if proc.returncode != 0:
                raise SystemExit(f"router_path: the run under callgrind failed:\n{stderr[-2000:]}")
            lines = [line for line in out.read_text().splitlines()
                     if line.startswith(("totals:", "summary:"))]
            if not lines:
                raise SystemExit("router_path: no totals in callgrind's output")
            totals.append(int(lines[0].split()[1]))
        return totals


def instructions(low: int, high: int, table_args: list[str]) -> float:
    first, second = callgrind_totals([low, high], table_args)
    return (second - first) / (high - low)


def git_revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "router"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200_000,
                        help="requests per timed run (200000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is shown (5)")
    parser.add_argument("--callgrind-cycles", default="2000,12000",
                        help="the two run lengths counted under callgrind (2000,12000)")
    parser.add_argument("--no-callgrind", action="store_true", help="only the µs figure")
    parser.add_argument("--label", default="", help="a note stored with the results")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/"
                        "router-path-<UTC time>.json)")
    parser.add_argument("--table-apps", type=int, default=1,
                        help="apps in the routing table (1; app1 serves the requests)")
    parser.add_argument("--hosts-per-app", type=int, default=1, help="host names per app (1)")
    parser.add_argument("--cycles", type=int, help=argparse.SUPPRESS)  # the callgrind child
    args = parser.parse_args()
    if args.table_apps < 1 or args.hosts_per_app < 1:
        parser.error("--table-apps and --hosts-per-app must be at least 1")
    table_args = ["--table-apps", str(args.table_apps), "--hosts-per-app", str(args.hosts_per_app)]
    if args.cycles is not None:
        cycles_only(args.cycles, routes_table(args.table_apps, args.hosts_per_app))
        return
    if args.iterations < CHUNK or args.repeats < 1:
        parser.error(f"--iterations must be at least {CHUNK}, --repeats at least 1")

    result: dict = {"label": args.label, "revision": git_revision(),
                    "python": platform.python_version(), "machine": platform.machine(),
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
                    "table_apps": args.table_apps, "hosts_per_app": args.hosts_per_app}
    if args.no_callgrind or shutil.which("valgrind") is None:
        if not args.no_callgrind:
            print("router_path: valgrind not found (apt-get install valgrind): µs only")
        result["instructions_per_request"] = None
    else:
        low, high = (int(n) for n in args.callgrind_cycles.split(","))
        result["callgrind_cycles"] = [low, high]
        result["instructions_per_request"] = round(instructions(low, high, table_args))
    table = routes_table(args.table_apps, args.hosts_per_app)
    samples = microseconds(args.iterations, args.repeats, warmup=CHUNK, table=table)
    result.update(iterations=args.iterations, repeats=args.repeats,
                  us_per_request=round(statistics.median(samples), 3),
                  us_samples=[round(s, 3) for s in samples])

    print(f"{'revision':<12} {'instructions/request':>22} {'µs/request (median)':>21}  samples")
    ir = result["instructions_per_request"]
    print(f"{result['revision']:<12} {ir if ir is not None else '-':>22} "
          f"{result['us_per_request']:>21.3f}  {', '.join(f'{s:.3f}' for s in samples)}")
    out = args.out or RESULTS / f"router-path-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
