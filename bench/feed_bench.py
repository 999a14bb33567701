"""The router's route-feed follower at scale, in one process (no control plane needed).

Measures, for routing tables of N apps (each with 2 hosts and 3 dynos):

* the cost of turning a snapshot line into a table (JSON decode, entry parsing, table build),
  and its size on the wire;
* the cost of decoding and applying a one-app delta to a table of N apps (`decode_line`, then
  `RouteTable.apply_delta` in place);
* what a request would feel while a snapshot is applied: the longest gap of a 1 ms ticker on
  the router's event loop while `RouteFeed.line` takes the snapshot — decoded, parsed and built
  in slices that yield to the loop (lines over 64 KiB, the follower's rule) and, for
  comparison, all at once on the loop.

    python bench/feed_bench.py                    # N = 1000, 10000, 50000
    python bench/feed_bench.py --apps 1000,100000 --repeat 5

Prints a table and writes JSON to bench/results/feed.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import router.feed as feed_module  # noqa: E402
from router.config import Endpoint, RouterConfig  # noqa: E402
from router.feed import RouteFeed, RouteFeedConfig, decode_line  # noqa: E402
from router.server import Router  # noqa: E402


def entry(index: int, revision: int = 0) -> dict:
    return {"name": f"app{index}", "hosts": [f"app{index}.localhost", f"www.app{index}.example.com"],
            "maintenance": False, "state": "running",
            "dynos": [{"name": f"web.{d}", "address": f"10.0.{index % 250}.{d}:{20000 + revision + d}"}
                      for d in range(1, 4)]}


def snapshot(apps: int, revision: int) -> bytes:
    return json.dumps({"type": "snapshot", "revision": revision,
                       "apps": [entry(i) for i in range(apps)]}).encode()


def timed(function, repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def loop_stall(line: bytes, offload_bytes: int) -> float:
    """Longest gap between ticks of a 1 ms ticker while the follower applies `line`."""
    router = Router(RouterConfig(listen=Endpoint("127.0.0.1", 0), admin=None), sinks=[])
    follower = RouteFeed(router, RouteFeedConfig(("http://unused",), "t"))
    follower.connected("http://unused")
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = loop.time()
            gaps.append(now - last)
            last = now

    saved = feed_module.OFFLOAD_BYTES
    feed_module.OFFLOAD_BYTES = offload_bytes
    task = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0.05)
        await follower.line(line)
        await asyncio.sleep(0.05)
    finally:
        done.set()
        await task
        feed_module.OFFLOAD_BYTES = saved
    assert router.table is not None
    return max(gaps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", default="1000,10000,50000",
                        help="table sizes, comma-separated (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "feed.json")
    args = parser.parse_args()
    sizes = [int(n) for n in args.apps.split(",")]
    results = []
    for apps in sizes:
        line = snapshot(apps, revision=100)
        table = decode_line(line, None, None, fresh=True, need_snapshot=True).table
        delta = json.dumps({"type": "delta", "revision": 101, "removed": [],
                            "apps": [entry(apps // 2, revision=1)]}).encode()
        snapshot_s = timed(lambda: decode_line(line, None, None, fresh=True, need_snapshot=True),
                           args.repeat)
        delta_s = timed(lambda: decode_line(delta, table, 100, fresh=False,
                                            need_snapshot=False).apply_to(table),
                        max(args.repeat, 20))
        offloaded = statistics.median(asyncio.run(loop_stall(line, feed_module.OFFLOAD_BYTES))
                                      for _ in range(args.repeat))
        inline = statistics.median(asyncio.run(loop_stall(line, 1 << 40))
                                   for _ in range(args.repeat))
        results.append({"apps": apps, "snapshot_bytes": len(line),
                        "snapshot_build_ms": round(snapshot_s * 1000, 2),
                        "delta_apply_ms": round(delta_s * 1000, 3),
                        "loop_stall_sliced_ms": round(offloaded * 1000, 2),
                        "loop_stall_inline_ms": round(inline * 1000, 2)})
    header = ("apps", "snapshot MB", "build ms", "1-app delta ms", "loop stall: sliced ms",
              "inline ms")
    print(" | ".join(header))
    for r in results:
        print(" | ".join(str(v) for v in (r["apps"], round(r["snapshot_bytes"] / 1e6, 2),
                                           r["snapshot_build_ms"], r["delta_apply_ms"],
                                           r["loop_stall_sliced_ms"],
                                           r["loop_stall_inline_ms"])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "repeat": args.repeat, "results": results}, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
