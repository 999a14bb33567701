"""One-off dynos: how long `dynomesh run echo hi` takes, from the shell's point of view.

Starts a real `dynomesh up` (its own home, free ports, no add-ons server), deploys
examples/hello, then runs the real CLI `--runs` times one after another and times each from
the process start to its exit: the CLI's start-up, `POST /apps/{app}/dynos`, the scheduler
placing `run.N`, the assignment feed, the dyno manager joining the session (a WebSocket to the
control plane), unpacking the slug, `/bin/sh -c 'echo hi'`, the output and exit status relayed
back, and the dyno's end report. For scale, the same CLI's `dynomesh ps` (one API call) is
timed as often, `run --detached` (the API call only), and the session alone without the CLI's
Python start-up (an in-process client: the POST, the WebSocket, the exit frame). Bounded: a fixed number of runs.
Prints a table and writes bench/results/run.json.

    python bench/run_bench.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import stamp, write_result  # noqa: E402
from bench.latency import summary  # noqa: E402

from tests.conftest import dynomesh_argv  # noqa: E402
from tests.e2e.harness import Cli, Up, copy_example, poll  # noqa: E402


def timed(cli: Cli, *args: str, expect: str = "") -> float:
    started = time.perf_counter()
    done = subprocess.run(dynomesh_argv(*args), env=cli.env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - started
    if done.returncode != 0 or expect not in done.stdout:
        raise SystemExit(f"`dynomesh {' '.join(args)}` failed ({done.returncode}):\n"
                         f"{done.stdout}{done.stderr}")
    return took


async def session_round_trip(api: str, token: str, app: str) -> float:
    """`run echo hi` without the CLI's start-up: the POST, the session and the exit frame."""
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{api}/apps/{app}/dynos",
                             json={"command": "echo hi", "attach": True}) as response:
            dyno = await response.json()
            assert response.status == 201, dyno
        output = b""
        async with http.ws_connect(dyno["attach_url"]) as ws:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.BINARY:
                    output += message.data[1:]
                elif json.loads(message.data).get("op") == "exit":
                    break
    assert output == b"hi\n", output
    return time.perf_counter() - started


def measure(up: Up, runs: int) -> list[dict]:
    cli = Cli(up.home)
    cli.ok("apps:create", "bench-run", "--no-link")
    cli.ok("deploy", str(copy_example("hello", up.home / "src")), "--app", "bench-run")
    poll(lambda: any(d["state"] == "up" for d in json.loads(cli.ok("ps", "--app", "bench-run",
                                                                   "--json"))),
         "web.1 up", timeout=60)
    timed(cli, "run", "echo hi", "--app", "bench-run", expect="hi\n")  # the slug is cached now
    attached = [timed(cli, "run", "echo hi", "--app", "bench-run", expect="hi\n")
                for _ in range(runs)]
    listing = [timed(cli, "ps", "--app", "bench-run") for _ in range(runs)]
    detached = [timed(cli, "run", "--detached", "echo hi", "--app", "bench-run")
                for _ in range(runs)]
    credentials = json.loads((up.home / "credentials.json").read_text())
    session = [asyncio.run(session_round_trip(credentials["api"], credentials["token"],
                                              "bench-run")) for _ in range(runs)]
    return [summary("run echo hi", attached), summary("run --detached", detached),
            summary("ps (baseline)", listing), summary("session only", session)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "run.json",
                        help="JSON file (default bench/results/run.json)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="dynomesh-bench-run-", dir="/tmp"))
    home.chmod(0o755)
    up = Up(home)
    try:
        up.wait_ready()
        rows = measure(up, args.runs)
    finally:
        up.kill()
    header = f"{'op':<16} {'count':>5} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['op']:<16} {r['count']:>5} {r['p50_ms']:>8} {r['p90_ms']:>8} "
              f"{r['max_ms']:>8}")
    result = {**stamp("run", load_average_1m_at_end=round(os.getloadavg()[0], 1)),
              "notes": "dynomesh up on this machine (SQLite store, one dyno manager); the real "
                       "CLI as a subprocess, one run at a time, the slug already cached; each "
                       "time is from the CLI's start to its exit",
              "rows": rows}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
