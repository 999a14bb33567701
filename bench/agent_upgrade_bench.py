"""Agent upgrade with N dynos: `dynomesh dynomgr --keep-dynos` stopped and a new agent started on
the same data dir, several times in a row.

Per upgrade it measures:

* dyno restarts: dynos whose first process changed (pid) or that the new agent started
  (`Starting process` lines), which must be 0;
* hand-over: seconds from SIGTERM to the old agent's exit (it records each dyno and leaves);
* adopt: seconds from the new agent's launch (a Python start-up included) to the last dyno's
  `Adopted by a new dyno manager` line, and from its `adopting N dynos` line to that last line;
* unwatched: seconds from SIGTERM to the last dyno adopted (no agent read their output then);
* whether every web dyno accepted a TCP connection while no agent ran.

    python bench/agent_upgrade_bench.py                      # 10 and 100 web dynos, 5 upgrades each
    python bench/agent_upgrade_bench.py --dynos 10 --upgrades 3

Prints a table and writes JSON to bench/results/agent_upgrade.json. The last agent drains, and
a safety net kills any dyno left (by its marker).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dynomgr_bench import (RESULTS, RUN_KEY, Agent, machine, make_slug, marked_pids,  # noqa: E402
                           parse_stamp, percentile, write_report)

UP = re.compile(r"bench heroku\[web\.\d+\]: State changed from starting to up")
ADOPTED = re.compile(r"^(\S+) bench heroku\[web\.\d+\]: Adopted by a new dyno manager")
STARTED = re.compile(r"bench heroku\[web\.\d+\]: Starting process")


class KeepingAgent(Agent):
    extra_flags = ["--keep-dynos"]


def admin_dynos(agent: Agent) -> list[dict]:
    """The agent's /dynos list (its admin endpoint)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{agent.admin}/dynos", timeout=10) as response:
        return json.loads(response.read())["dynos"]


def dyno_pids(agent: Agent) -> dict[str, int]:
    return {d["name"]: d["pid"] for d in admin_dynos(agent)}


def addresses(agent: Agent) -> list[tuple[str, int]]:
    found = [d["address"] for d in admin_dynos(agent)]
    return [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in found if a]


def all_accept(targets: list[tuple[str, int]]) -> bool:
    for target in targets:
        try:
            with socket.create_connection(target, timeout=2):
                pass
        except OSError:
            return False
    return True


def upgrade(old: Agent, work: Path, assignments: Path, data_dir: Path, count: int, timeout: float) -> tuple[Agent, dict]:
    pids = dyno_pids(old)
    targets = addresses(old)
    sigterm = time.time()
    old.proc.send_signal(signal.SIGTERM)
    old.proc.wait(timeout)
    handover = time.time() - sigterm
    served_unwatched = all_accept(targets)
    new = KeepingAgent(work, assignments, data_dir)
    if not new.wait_count(ADOPTED, count, timeout):
        raise RuntimeError(f"only {sum(1 for _, l in new.lines if ADOPTED.search(l))} of {count} dynos adopted:\n" + "\n".join(new.err[-20:]))
    last = max(parse_stamp(ADOPTED.search(line).group(1)) for _, line in new.lines if ADOPTED.search(line))
    adopting = next(parse_stamp(l.split()[0]) for l in new.err if "adopting" in l)
    after = dyno_pids(new)
    restarts = sum(1 for name, pid in pids.items() if after.get(name) != pid)
    restarts += sum(1 for _, line in new.lines if STARTED.search(line))
    return new, {
        "restarts": restarts,
        "handover_seconds": handover,
        "adopt_seconds_from_launch": last - new.launched,
        "adopt_seconds_from_take_over": last - adopting,
        "unwatched_seconds": last - sigterm,
        "served_while_unwatched": served_unwatched,
    }


def run(work: Path, count: int, upgrades: int, timeout: float) -> dict:
    run_id = uuid.uuid4().hex[:12]
    slug = make_slug(work)
    data_dir = work / f"data-{count}"
    assignments = work / f"assignments-{count}.json"
    entries = [{"kind": "formation", "name": f"web.{i}", "app": "bench", "type": "web", "release": 1,
                "slug": slug, "env": {RUN_KEY: run_id}, "memory_mb": 64, "health_check": None}
               for i in range(1, count + 1)]  # fmt: skip
    assignments.write_text(json.dumps({"dynos": entries}))
    agent = KeepingAgent(work, assignments, data_dir)
    rounds = []
    try:
        if not agent.wait_count(UP, count, timeout):
            raise RuntimeError(f"not all {count} dynos up:\n" + "\n".join(agent.err[-20:]))
        for number in range(upgrades):
            agent, figures = upgrade(agent, work, assignments, data_dir, count, timeout)
            rounds.append(figures)
            print(f"  {count} dynos, upgrade {number + 1}: {figures['restarts']} restarts, "
                  f"adopted {figures['adopt_seconds_from_launch']:.2f} s after launch", flush=True)
    finally:
        agent.drain(timeout)
        for pid in marked_pids(run_id):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def spread(key: str) -> dict:
        values = [r[key] for r in rounds]
        return {"p50": percentile(values, 50), "max": max(values)}

    return {
        "dynos": count, "upgrades": upgrades, "restarts_total": sum(r["restarts"] for r in rounds),
        "handover_seconds": spread("handover_seconds"),
        "adopt_seconds_from_launch": spread("adopt_seconds_from_launch"),
        "adopt_seconds_from_take_over": spread("adopt_seconds_from_take_over"),
        "unwatched_seconds": spread("unwatched_seconds"),
        "served_while_unwatched": all(r["served_while_unwatched"] for r in rounds),
        "rounds": rounds,
    }  # fmt: skip


def print_table(report: dict) -> None:
    rows = [("dynos", "upgrades", "restarts", "hand-over p50/max (s)", "adopt from launch p50/max (s)",
             "adopt from take-over p50/max (s)", "unwatched p50/max (s)", "served unwatched")]
    for r in report["runs"]:
        def pm(key: str) -> str:
            return f"{r[key]['p50']:.3f} / {r[key]['max']:.3f}"
        rows.append((str(r["dynos"]), str(r["upgrades"]), str(r["restarts_total"]), pm("handover_seconds"),
                     pm("adopt_seconds_from_launch"), pm("adopt_seconds_from_take_over"),
                     pm("unwatched_seconds"), "yes" if r["served_while_unwatched"] else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dynos", default="10,100", help="comma-separated dyno counts (default 10,100)")
    parser.add_argument("--upgrades", type=int, default=5, help="upgrades in a row per count (default 5)")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on a step after this long")
    parser.add_argument("--output", type=Path, default=RESULTS / "agent_upgrade.json")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="agent-upgrade-bench-", dir="/tmp"))
    work.chmod(0o755)  # dyno users must reach their directories under it
    try:
        report = {
            "benchmark": "agent_upgrade",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "runs": [run(work, int(n), args.upgrades, args.timeout) for n in args.dynos.split(",")],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(report)
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
