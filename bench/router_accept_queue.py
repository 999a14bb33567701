#!/usr/bin/env python3
"""The router's accept queue while 1000 clients reconnect at once, as router_bench.py's runs do.

    python bench/router_accept_queue.py                          # this checkout, 3 rounds
    python bench/router_accept_queue.py --before ../main --rounds 4

router_bench.py warms each proxy up with wrk (2 s) and then starts the measured wrk: the
warm-up's 1000 connections close and the measured run's 1000 connect at once, to a router still
busy. Connections the router has not accepted yet wait in the kernel's accept queue with their
first request sent, and wrk counts that wait. This runs the same sequence with the router alone
(no other proxy) and samples the listening socket's queue (`ss`, Recv-Q) every quarter second
every 20 ms during both wrk runs: the longest queue seen, and the longest stretch of time it
stayed non-empty (how long the last of a burst of clients waited to be accepted).

Layout and wrk as router_bench.py (router on core 0, wrk and the nginx backend on core 1).
Output: a table, and JSON under bench/results/ (router-accept-queue-<UTC time>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import router_bench as rb  # noqa: E402  (the layout, wrk and the backend are router_bench's)

CONNECTIONS = 1000
SAMPLE_EVERY = 0.02


def accept_queue(port: int) -> int:
    """Connections the kernel completed that the router has not accepted (Recv-Q)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=5).stdout.split()
    return int(out[1]) if len(out) > 1 else 0


def one_round(tree: Path, label: str, work: Path, backend_port: int, duration: float) -> dict:
    port = rb.free_port()
    argv, env, stdout_path = rb.Target("dynomesh", None, tree=tree).command(work, port,
                                                                           backend_port)
    proc = subprocess.Popen(["taskset", "-c", rb.PROXY_CORE, *argv],
                            stdout=open(stdout_path, "wb"), stderr=subprocess.DEVNULL,
                            env={**os.environ, **env}, start_new_session=True)
    queues: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        deadline = time.monotonic() + duration + 30  # bounded even if wrk hangs
        while not done.is_set() and time.monotonic() < deadline:
            queues.append((time.monotonic(), accept_queue(port)))
            time.sleep(SAMPLE_EVERY)

    try:
        rb.wait_for_port(port, proc)
        sampler = threading.Thread(target=sample)
        sampler.start()
        load = rb.Load(CONNECTIONS)
        rb.run_wrk(port, 2, load)  # the warm-up, as router_bench.py's
        measured = rb.run_wrk(port, duration, load)
        done.set()
        sampler.join()
    finally:
        done.set()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    return {"router": label, "p50_ms": measured["p50_ms"], "p99_ms": measured["p99_ms"],
            "requests": measured["requests"], "errors": measured["errors"],
            "max_accept_queue": max((q for _, q in queues), default=0),
            "longest_queued_s": round(longest_queued(queues), 3)}


def longest_queued(samples: list[tuple[float, int]]) -> float:
    """The longest stretch between the first and last of consecutive non-empty samples."""
    longest, since = 0.0, None
    for when, queue in samples:
        if queue and since is None:
            since = when
        elif not queue and since is not None:
            longest, since = max(longest, when - since), None
    if since is not None:
        longest = max(longest, samples[-1][0] - since)
    return longest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per router (3)")
    parser.add_argument("--duration", type=float, default=10, help="measured seconds (10)")
    parser.add_argument("--before", type=Path, help="also the router of this checkout, "
                        "interleaved (`git worktree add ../main REV`)")
    parser.add_argument("--out", type=Path,
                        help="JSON file (default bench/results/router-accept-queue-*.json)")
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "taskset", "nginx", "ss") if not rb.shutil.which(tool)]
    if missing:
        print(f"router_accept_queue: needs {', '.join(missing)}", file=sys.stderr)
        return 2
    rb.raise_open_files_limit()
    trees = [("this", rb.REPO)] + ([("before", args.before.resolve())] if args.before else [])
    rows = []
    with rb.tempfile.TemporaryDirectory() as tmp, rb.Backend(Path(tmp)) as backend:
        for round_ in range(args.rounds):
            for label, tree in trees:
                print(f"round {round_ + 1}/{args.rounds}: {label}...", flush=True)
                rows.append(one_round(tree, label, Path(tmp), backend.port, args.duration))
    print(f"\n{'router':8} {'p50 ms':>8} {'p99 ms':>9} {'max queue':>10} {'queued for s':>13}")
    for row in rows:
        print(f"{row['router']:8} {row['p50_ms']:8.1f} {row['p99_ms']:9.1f} "
              f"{row['max_accept_queue']:10d} {row['longest_queued_s']:13.2f}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or rb.RESULTS / f"router-accept-queue-{stamp}.json"
    out.write_text(json.dumps({
        "revision": rb.git_revision(), "before": rb.git_revision(args.before) if args.before
        else None, "connections": CONNECTIONS, "duration": args.duration,
        "load": os.getloadavg(), "rounds": rows}, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
