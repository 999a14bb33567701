#!/usr/bin/env python3
"""HTTP/2 benchmark: the router's h2 beside nginx's, and beside HTTPS/1.1, same certificate.

    python bench/h2_bench.py                      # 8 s per measurement
    python bench/h2_bench.py --duration 5 --runs 3

For each of nginx (one worker, `listen ... ssl http2`) and the dynomesh router (`--listen-tls`,
ALPN h2 then http/1.1), h2load (Debian's nghttp2-client) measures:

- h2, 100 streams on one connection: `h2load -c 1 -m 100`;
- h2, 50 connections of one stream each: `h2load -c 50 -m 1` (the concurrency of the next);
- HTTPS/1.1, 50 keep-alive connections: `h2load --h1 -c 50`;

requests per second and the proxy's CPU per request (utime+stime of its processes from /proc
over the run, divided by the requests done). Both proxy to the same backend nginx over HTTP/1.1
keep-alive, pinned as in bench/router_bench.py: the proxy on core 0, h2load and the backend on
core 1. The certificate and curve are tls_bench.py's (ECDSA P-256, X25519).

The h2 library's own share: `library_cost` replays, in this process, what one request costs
the library on the router's side (receive a HEADERS frame with HPACK, send the response's
HEADERS and DATA and END_STREAM, 100 streams per batch as h2load sends them) and times it with
the process clock; that beside the router's CPU per request over h2 is the library's share.

Results: a table on stdout and JSON under bench/results/ (h2-<UTC time>.json). The machine is
shared with other work: wall-clock and CPU figures swing between runs; `--runs` interleaves
rounds, and the JSON's note says so.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_bench import (LOAD_CORE, REPO, RESULTS, Backend, git_revision,  # noqa: E402
                          raise_open_files_limit)
from tls_bench import SNI, Proxy, make_certificate  # noqa: E402

MODES = {  # name -> h2load arguments
    "h2_1x100": ["-c", "1", "-m", "100"],
    "h2_50x1": ["-c", "50", "-m", "1"],
    "https1_50": ["--h1", "-c", "50"],
}


def h2load(port: int, seconds: float, mode: list[str]) -> tuple[int, int, str]:
    """-> (requests answered 2xx, requests failed or not 2xx, protocol h2load reported)."""
    argv = ["taskset", "-c", LOAD_CORE, "h2load", *mode, "-t", "1", "-D", str(round(seconds)),
            "--warm-up-time", "1", f"https://{SNI}:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    protocol = re.search(r"Application protocol: (\S+)", out)
    if done is None or codes is None:
        raise RuntimeError(f"h2load printed no result:\n{out}")
    ok = int(codes.group(1))
    return ok, int(done.group(1)) - ok, protocol.group(1) if protocol else "?"


def measure(proxy: Proxy, seconds: float, mode: list[str]) -> dict:
    before, started = proxy.cpu(), time.monotonic()
    ok, failed, protocol = h2load(proxy.port, seconds, mode)
    elapsed = time.monotonic() - started
    cpu = proxy.cpu() - before
    # h2load's warm-up second is in the CPU too, not in its count: its rate covers both.
    return {"requests": ok, "failed": failed, "protocol": protocol,
            "per_second": round(ok / max(elapsed - 1, 0.1), 1),
            "cpu_us_per_request": round(cpu / max(ok, 1) * 1e6, 1)}


def library_cost(requests: int = 20000, streams: int = 100) -> dict:
    """The h2 library's work per request on the router's side, timed in this process."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived, RequestReceived

    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None,
                                          validate_outbound_headers=False,
                                          normalize_outbound_headers=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    request = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"app1.localhost"),
               (b":path", b"/"), (b"user-agent", b"h2load nghttp2/1.52.0"),
               (b"accept", b"*/*")]
    response = [(b":status", b"200"), (b"content-type", b"text/plain"),
                (b"content-length", b"13"), (b"via", b"1.1 dynomesh")]
    body = b"Hello, world!"
    spent = 0.0
    for _ in range(requests // streams):
        for _ in range(streams):  # the client's side, not timed
            client.send_headers(client.get_next_available_stream_id(), request, end_stream=True)
        wire = client.data_to_send()
        started = time.process_time()
        events = server.receive_data(wire)
        for event in events:
            if type(event) is RequestReceived:
                server.send_headers(event.stream_id, response)
                server.send_data(event.stream_id, body)
                server.end_stream(event.stream_id)
        answer = server.data_to_send()
        spent += time.process_time() - started
        for event in client.receive_data(answer):  # the client's side, not timed
            if type(event) is DataReceived:
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        server.receive_data(client.data_to_send())  # its window updates
    return {"requests": requests, "streams_per_batch": streams,
            "cpu_us_per_request": round(spent / requests * 1e6, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per h2load run")
    parser.add_argument("--runs", type=int, default=1, help="rounds, interleaved")
    parser.add_argument("--note", default="shared 2-core VM, other engineers' tests and builds "
                        "running: figures are noisy", help="stored with the result")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/h2-*.json)")
    args = parser.parse_args()
    raise_open_files_limit()
    library = library_cost()
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dynomesh-h2-") as tmp:
        work = Path(tmp)
        chain, key = make_certificate(work)
        with Backend(work) as backend:
            for run in range(args.runs):
                for name in ("nginx", "dynomesh"):
                    proxy = Proxy(name, work, backend.port, chain, key, http2=True)
                    try:
                        row = {"target": name, "run": run + 1}
                        for mode, argv in MODES.items():
                            row[mode] = measure(proxy, args.duration, argv)
                    finally:
                        proxy.stop()
                    rounds.append(row)
                    print(f"  {name} run {run + 1}: done", file=sys.stderr)
    print_table(rounds, library)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = args.out or RESULTS / f"h2-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps({
        "benchmark": "h2", "revision": git_revision(), "duration_s": args.duration,
        "certificate": "ECDSA P-256, self-signed", "modes": MODES, "note": args.note,
        "rounds": rounds, "h2_library": library}, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def print_table(rounds: list[dict], library: dict) -> None:
    print(f"{'target':<10} {'run':>3} " + " ".join(
        f"{mode + ' req/s':>17} {'CPU us/req':>10}" for mode in MODES) + f" {'failed':>6}")
    for row in rounds:
        print(f"{row['target']:<10} {row['run']:>3} " + " ".join(
            f"{row[mode]['per_second']:>17.0f} {row[mode]['cpu_us_per_request']:>10.1f}"
            for mode in MODES) + f" {sum(row[mode]['failed'] for mode in MODES):>6}")
    print(f"h2 library alone (server side, {library['streams_per_batch']} streams per batch): "
          f"{library['cpu_us_per_request']} us per request")
    routers = [row for row in rounds if row["target"] == "dynomesh"]
    if routers:
        cost = min(row["h2_1x100"]["cpu_us_per_request"] for row in routers)
        print(f"  = {100 * library['cpu_us_per_request'] / cost:.0f} % of the router's "
              f"{cost} us per request over h2 (100 streams, best run)")


if __name__ == "__main__":
    sys.exit(main())
