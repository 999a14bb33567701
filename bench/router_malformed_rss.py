#!/usr/bin/env python3
"""Router memory under malformed input: RSS before and after 100 000 bad requests.

    python bench/router_malformed_rss.py                    # 100 000 requests, 32 at a time
    python bench/router_malformed_rss.py --requests 20000 --concurrency 16

Starts `dynomesh router` (one process) in front of a small backend served by this script, warms
it up with a few thousand requests of every kind, reads its resident set size (VmRSS), then
sends the malformed requests on loopback, each on its own connection (the router closes every
connection it refuses), cycling through the kinds below, and reads the RSS again once the
router is idle. A flat RSS means nothing is kept per refused request. Good requests are mixed
in at the end to show the router still serves.

Every loop is bounded: by --requests and by --max-seconds. Traffic stays on 127.0.0.1.
Results: a table on stdout and JSON under bench/results/ (router-rss-<UTC time>.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
HOST = b"Host: app1.localhost\r\n"
GET = b"GET / HTTP/1.1\r\n"

# What the router must refuse; each kind is sent in turn. The chunked ones reach the dyno
# connection before the body turns out bad (the exchange and pool paths run too).
MALFORMED = {
    "control byte in a value": GET + HOST + b"X: a\x01b\r\n\r\n",
    "bare LF": b"GET / HTTP/1.1\n" + HOST + b"\r\n",
    "obs-fold": GET + HOST + b"X: a\r\n b\r\n\r\n",
    "space before colon": GET + b"Host : app1.localhost\r\n\r\n",
    "request line over 8192": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
    "header line over 8192": GET + HOST + b"X: " + b"v" * 9000 + b"\r\n\r\n",
    "1001 headers": GET + HOST + b"X: 1\r\n" * 1001 + b"\r\n",
    "no Host": GET + b"\r\n",
    "HTTP/2.0": b"GET / HTTP/2.0\r\n" + HOST + b"\r\n",
    "CONNECT": b"CONNECT app1.localhost:443 HTTP/1.1\r\n" + HOST + b"\r\n",
    "Expect other than 100-continue": b"POST / HTTP/1.1\r\n" + HOST
    + b"Expect: nothing\r\nContent-Length: 1\r\n\r\nx",
    "two Content-Lengths": b"POST / HTTP/1.1\r\n" + HOST
    + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
    "bad chunk size": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nabc\r\n0\r\n\r\n",
    "Host in trailers": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    b"1\r\na\r\n0\r\nHost: evil\r\n\r\n",
    "random bytes": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),
}
GOOD = GET + HOST + b"Connection: close\r\n\r\n"


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal dyno: answers each request head with 200 (bodies are drained by length)."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if b"chunked" in head.lower():
                return  # the refused chunked bodies never finish; the router closes
            if length:
                await reader.readexactly(int(length.group(1)))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def one(port: int, payload: bytes) -> bytes:
    """Send one request on a new connection; -> the status line (b"" if none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        line = await reader.readline()
        await reader.read()  # to the router's close
        return line
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def load(port: int, payloads: list[bytes], count: int, concurrency: int,
               deadline: float) -> tuple[Counter, int]:
    """`count` requests cycling through `payloads`, `concurrency` at a time."""
    statuses: Counter = Counter()
    sent = 0

    async def worker(start: int) -> None:
        nonlocal sent
        i = start
        while sent < count and time.monotonic() < deadline:
            sent += 1
            try:
                line = await one(port, payloads[i % len(payloads)])
            except OSError as error:
                statuses[f"error: {error.__class__.__name__}"] += 1
            else:
                statuses[line.split(b" ")[1].decode() if line.count(b" ") >= 2 else "closed"] += 1
            i += concurrency

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return statuses, sent


async def run(args) -> dict:
    server = await asyncio.start_server(backend, "127.0.0.1", 0, limit=1 << 20)
    dyno_port = server.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="dynomesh-rss-") as tmp:
        routes = Path(tmp) / "routes.json"
        routes.write_text(json.dumps({"apps": [{"name": "app1", "hosts": ["app1.localhost"],
                                                "dynos": [{"name": "web.1",
                                                           "address": f"127.0.0.1:{dyno_port}"}]}]}))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dynomesh", "router", "--listen", "127.0.0.1:0", "--admin",
            "off", "--routes", str(routes), env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            ready = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
            port = int(re.search(r"ready on http://127\.0\.0\.1:(\d+)", ready).group(1))
            deadline = time.monotonic() + args.max_seconds
            kinds = list(MALFORMED.values())
            warm, _ = await load(port, kinds + [GOOD], args.warmup, args.concurrency, deadline)
            before = rss_kib(process.pid)
            started = time.monotonic()
            statuses, sent, samples = Counter(), 0, []
            for step in range(10):  # in tenths, to see whether the RSS keeps growing
                part, count = await load(port, kinds, args.requests * (step + 1) // 10 - sent,
                                         args.concurrency, deadline)
                statuses += part
                sent += count
                samples.append([sent, rss_kib(process.pid)])
            elapsed = time.monotonic() - started
            after = rss_kib(process.pid)
            good, _ = await load(port, [GOOD], 100, 4, time.monotonic() + 60)
            settled = rss_kib(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            await process.wait()
    server.close()
    return {
        "benchmark": "router-malformed-rss", "requests": sent, "concurrency": args.concurrency,
        "seconds": round(elapsed, 1), "requests_per_second": round(sent / elapsed),
        "kinds": list(MALFORMED), "statuses": dict(statuses), "warmup_statuses": dict(warm),
        "good_after": dict(good),
        "rss_kib": {"before": before, "after": after, "after_good_requests": settled},
        "rss_kib_by_requests": samples,
        "rss_growth_kib": after - before,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python bench/router_malformed_rss.py")
    parser.add_argument("--requests", type=int, default=100_000, help="malformed requests")
    parser.add_argument("--warmup", type=int, default=3000, help="requests before measuring")
    parser.add_argument("--concurrency", type=int, default=32, help="connections at a time")
    parser.add_argument("--max-seconds", type=float, default=900, help="stop after this long")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/router-rss-*.json)")
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(run(args))
    rss = result["rss_kib"]
    print(f"\n{'phase':<32} {'requests':>9} {'RSS MiB':>8}")
    print(f"{'after warm-up':<32} {args.warmup:>9} {rss['before'] / 1024:>8.1f}")
    for count, kib in result["rss_kib_by_requests"][:-1]:
        print(f"{'  ... malformed so far':<32} {count:>9} {kib / 1024:>8.1f}")
    print(f"{'after malformed requests':<32} {result['requests']:>9} {rss['after'] / 1024:>8.1f}")
    print(f"{'after 100 good requests':<32} {100:>9} {rss['after_good_requests'] / 1024:>8.1f}")
    print(f"\nRSS growth over {result['requests']} malformed requests: "
          f"{result['rss_growth_kib']} KiB; {result['requests_per_second']} requests/s")
    print("answers:", ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses"].items())))
    print("good requests after:", result["good_after"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"router-rss-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
