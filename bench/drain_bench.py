"""Log drains: lines per second one drain delivers (syslog over TCP and TLS, HTTPS), alone and
behind a real control plane, and the control plane's CPU per line with two drains vs none.

Receivers are this process's (tests/drainreceivers.py: they parse every frame), on loopback.

- delivery: one `DrainDelivery` per kind, given `--lines` router lines at once (its buffer
  holds them all), timed from the first line offered to the last one received: the drain's
  own ceiling (formatting, batching, the socket or HTTPS), with the receiver's parsing on the
  same machine;
- control plane: a real `dynomesh control` (SQLite), `--posters` clients posting batches of
  1000 router lines for `--seconds`, first with no drain, then with a syslog and an HTTPS drain
  on the app; reported: lines stored per second, lines per second each drain delivered (from
  the first post to its last line), and the control plane's CPU time per 1000 lines in each
  run; then the same with both drains' receivers gone bad (one accepts and never reads, one is
  not listening): lines stored per second, the lines the drains dropped, and the CPU; and
  last with no drain again, to show how much the runs drift on their own.

Bounded by --lines, --seconds and --timeout. Prints a table and writes bench/results/drains.json.

    python bench/drain_bench.py [--lines 100000] [--seconds 5] [--posters 2] [--timeout 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import stamp, write_result  # noqa: E402
from controlplane.drains.buffer import BufferLimits  # noqa: E402
from controlplane.drains.delivery import DeliverySettings, DrainDelivery  # noqa: E402
from controlplane.drains.transport import transport_for  # noqa: E402
from controlplane.drains.urls import parse  # noqa: E402
from controlplane.logs.lines import Rendered  # noqa: E402
from controlplane.store.logs import LogEntry  # noqa: E402
from controlplane.store.models import Drain, DrainStats  # noqa: E402
from dynomesh import logline  # noqa: E402
from dynomesh.tasks import cancel_and_wait  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.controlplane.harness import ControlPlane  # noqa: E402
from tests.drainreceivers import HttpsReceiver, SyslogReceiver, tls_pair  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from logs_bench import ROUTER_TEXT as LOGS_ROUTER_TEXT, cpu_seconds  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "drains.json"
# A typical router line's text (about 230 bytes with its timestamp), as logs_bench.py posts.
ROUTER_TEXT = LOGS_ROUTER_TEXT.format(n=0)


# --- one drain alone ---

async def one_delivery(kind: str, lines: int, timeout: float) -> dict:
    server, client, _ = tls_pair()
    receiver = await (HttpsReceiver(server) if kind == "https" else
                      SyslogReceiver(server if kind == "syslog+tls" else None)).start()
    url = receiver.url() if kind == "https" else receiver.url
    settings = DeliverySettings(BufferLimits(lines=lines + 10, bytes=1 << 30))
    drain = Drain("bench", "bench-id", "bench", url, "d.bench", "", 0, "bench", None, 1,
                  DrainStats())
    delivery = DrainDelivery(drain, transport_for(parse(url), drain.token, client,
                                                  timeout=settings.timeout),
                             settings, clock=time.time, on_notice=lambda notice: None)
    delivery.catch_up([])
    delivery.start(0)
    stamp = logline.rfc5424_timestamp()
    entries = [LogEntry(n, stamp, "heroku", "router", ROUTER_TEXT) for n in range(1, lines + 1)]
    task = asyncio.create_task(delivery.run())
    cpu_before = time.process_time()
    began = time.perf_counter()
    try:
        for start in range(0, lines, 1000):
            delivery.deliver(Rendered(entries[start:start + 1000]))
        await receiver.wait_for(lines, timeout)
        elapsed = time.perf_counter() - began
    finally:
        await cancel_and_wait(task)
        await receiver.stop()
    cpu = time.process_time() - cpu_before
    return {"kind": kind, "lines": len(receiver.messages), "seconds": round(elapsed, 3),
            "lines_per_s": round(lines / elapsed),
            "process_cpu_us_per_line": round(cpu / lines * 1e6, 2),
            "dropped": delivery.stats().dropped, "retries": delivery.retries}


# --- behind a control plane ---

async def post_for(session, token: str, seconds: float, posters: int) -> int:
    stamp = logline.rfc5424_timestamp()
    body = ("@bench\n" + "".join(f"{stamp} heroku[router]: {ROUTER_TEXT}\n"
                                 for _ in range(1000))).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    stored = 0
    deadline = time.perf_counter() + seconds

    async def poster() -> None:
        nonlocal stored
        while time.perf_counter() < deadline:
            async with session.post("/logs", data=body, headers=headers) as response:
                answer = await response.read()
                if response.status == 200:
                    stored += json.loads(answer)["accepted"]

    await asyncio.gather(*(poster() for _ in range(posters)))
    return stored


async def measured(plane: ControlPlane, session, token: str, args) -> dict:
    """One posting run: lines stored, per second, and the control plane's CPU per 1000."""
    before = cpu_seconds(plane.process.pid)
    began = time.perf_counter()
    stored = await post_for(session, token, args.seconds, args.posters)
    elapsed = time.perf_counter() - began
    cpu = cpu_seconds(plane.process.pid) - before
    return {"lines": stored, "lines_per_s": round(stored / elapsed),
            "cpu_ms_per_1000_lines": round(cpu / stored * 1e6, 1), "began": began,
            "posted": elapsed}


async def through_control(args) -> dict:
    server, _, ca_pem = tls_pair()
    work = Path(tempfile.mkdtemp(prefix="dynomesh-bench-drains-"))
    (work / "ca.pem").write_bytes(ca_pem)
    plane = ControlPlane(work / "home", extra_args=(
        "--drain-ca-file", str(work / "ca.pem"), "--drain-buffer", "100000"))
    # (100 000 lines: the healthy drains never drop while the posters run ahead of them.)
    await asyncio.to_thread(plane.start)
    syslog = await SyslogReceiver().start()
    https = await HttpsReceiver(server).start()
    stuck = await SyslogReceiver(stalled=True).start()
    rows = {}
    try:
        auth = {"Authorization": f"Bearer {plane.token}"}
        async with aiohttp.ClientSession(plane.url) as session:
            async with session.post("/apps", json={"name": "bench"}, headers=auth) as r:
                assert r.status == 201
            async with session.post("/tokens", json={"role": "router"}, headers=auth) as r:
                token = (await r.json())["token"]
            await post_for(session, token, 1.0, args.posters)  # warm-up
            rows["no_drain"] = await measured(plane, session, token, args)
            for url in (syslog.url, https.url()):
                async with session.post("/apps/bench/drains", json={"url": url},
                                        headers=auth) as r:
                    assert r.status == 201, await r.text()
            row = await measured(plane, session, token, args)
            arrived = {}
            for name, receiver in (("syslog", syslog), ("https", https)):
                await receiver.wait_for(row["lines"], args.timeout)
                arrived[name] = time.perf_counter() - row["began"]
            async with session.get("/apps/bench/drains", headers=auth) as r:
                drains = await r.json()
            rows["two_drains"] = {
                **row,
                "delivered_lines_per_s": {name: round(row["lines"] / seconds)
                                          for name, seconds in arrived.items()},
                "last_line_after_posting_s": {name: round(seconds - row["posted"], 3)
                                              for name, seconds in arrived.items()},
                "dropped": sum(d["delivery"]["dropped"] for d in drains)}
            # The same two drains' receivers gone bad: one never reads, one is not there.
            for drain in drains:
                async with session.delete(f"/apps/bench/drains/{drain['id']}",
                                          headers=auth) as r:
                    assert r.status == 200
            for url in (stuck.url, f"syslog://127.0.0.1:{free_port()}"):
                async with session.post("/apps/bench/drains", json={"url": url},
                                        headers=auth) as r:
                    assert r.status == 201, await r.text()
            row = await measured(plane, session, token, args)
            async with session.get("/apps/bench/drains", headers=auth) as r:
                drains = await r.json()
            rows["two_dead_drains"] = {
                **row,
                "dropped": sum(d["delivery"]["dropped"] for d in drains),
                "retries": sum(d["delivery"]["retries"] for d in drains)}
            # No drain again: how much the runs drift on their own (the database grows, the
            # machine's other work comes and goes).
            for drain in drains:
                async with session.delete(f"/apps/bench/drains/{drain['id']}",
                                          headers=auth) as r:
                    assert r.status == 200
            rows["no_drain_again"] = await measured(plane, session, token, args)
    finally:
        await syslog.stop()
        await https.stop()
        await stuck.stop()
        plane.stop()
    for row in rows.values():
        del row["began"], row["posted"]
    return rows


async def run(args) -> dict:
    alone = [await one_delivery(kind, args.lines, args.timeout)
             for kind in ("syslog", "syslog+tls", "https")]
    return {"delivery": alone, "control_plane": await through_control(args)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="lines per drain alone")
    parser.add_argument("--seconds", type=float, default=5.0, help="posting time (5)")
    parser.add_argument("--posters", type=int, default=2, help="concurrent posters (2)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="the longest wait for a receiver to get everything (120)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="JSON file (default bench/results/drains.json)")
    args = parser.parse_args()
    measured = asyncio.run(run(args))
    print(f"\n{'one drain alone':<18} {'lines/s':>9} {'CPU us/line':>12}  (bench process: "
          "drain and receiver)")
    for row in measured["delivery"]:
        print(f"{row['kind']:<18} {row['lines_per_s']:>9} {row['process_cpu_us_per_line']:>12}")
    control = measured["control_plane"]
    print(f"\n{'control plane':<18} {'stored/s':>9} {'CPU ms/1000':>12} {'syslog/s':>9} "
          f"{'https/s':>9}")
    for name, row in control.items():
        delivered = row.get("delivered_lines_per_s", {})
        print(f"{name:<18} {row['lines_per_s']:>9} {row['cpu_ms_per_1000_lines']:>12} "
              f"{delivered.get('syslog', '-'):>9} {delivered.get('https', '-'):>9}")
    result = {**stamp("drains", kernel=platform.release()),
              "settings": {key: value for key, value in vars(args).items() if key != "out"},
              "notes": "receivers parse every frame in the bench process, on the same cores; "
                       "the control plane runs on SQLite (synchronous=FULL)",
              **measured}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
