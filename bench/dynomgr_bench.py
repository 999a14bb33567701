"""Dyno manager at scale: N small dynos on this machine.

Measures, for one `dynomesh dynomgr` running N dynos:

* seconds from the agent's launch until every dyno is `up` (web: its port accepts);
* the delay from a web dyno calling listen() on $PORT to the agent reporting it `up`
  (the dyno prints time.time() right after listen(); the agent's `up` line carries the time
  of the report; both clocks are this machine's), p50/p99/max;
* the agent's CPU while idle with N dynos (percent of one core over --idle seconds) and its
  RSS, in total and per dyno (minus an agent running zero dynos);
* the seconds a SIGTERM drain of all N dynos takes.

Two workloads: `web` (a tiny Python listener per dyno, the readiness path) and `sleep` (a
worker running `sleep`, like-for-like with supervisord running `sleep` programs).

    python bench/dynomgr_bench.py                 # 500 web dynos, then 500 sleep dynos
    python bench/dynomgr_bench.py --dynos 100 --workload web --idle 10

Prints a table and writes JSON to bench/results/dynomgr.json. Every process it starts is
stopped before it exits (the agent drains them; a safety net kills stragglers by marker).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
RUN_KEY = "DYNOMGR_BENCH_RUN"
CLK_TCK = os.sysconf("SC_CLK_TCK")

LISTENER = """\
import os, signal, socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(os.environ["PORT"])))
s.listen(64)
print("listening %.6f" % time.time(), flush=True)
signal.pause()
"""

UP_LINE = re.compile(r"^(\S+) bench heroku\[(web\.\d+)\]: State changed from starting to up")
WORKER_UP = re.compile(r"^(\S+) bench heroku\[(worker\.\d+)\]: State changed from starting to up")
LISTEN_LINE = re.compile(r"^\S+ bench app\[(web\.\d+)\]: listening (\d+\.\d+)$")


def parse_stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_slug(directory: Path) -> dict:
    path = directory / "bench-slug.tgz"
    files = {
        "Procfile": f"web: {PYTHON} -S -u listener.py\nworker: sleep 86400\n".encode(),
        "listener.py": LISTENER.encode(),
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return {"url": f"file://{path}", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


class Agent:
    extra_flags: list[str] = []

    def __init__(self, work: Path, assignments: Path, data_dir: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.admin = free_port()
        argv = [
            sys.executable, "-m", "dynomesh", "dynomgr",
            "--assignments", str(assignments), "--data-dir", str(data_dir),
            "--admin", f"127.0.0.1:{self.admin}", "--no-cycling", *self.extra_flags,
        ]  # fmt: skip
        self.launched = time.time()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=work)
        self.lines: list[tuple[float, str]] = []  # (time read, line)
        self.err: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False), daemon=True).start()

    def _read(self, stream, sink, stamped) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                sink.append((time.time(), line) if stamped else line)
                self._cond.notify_all()

    def wait_count(self, pattern: re.Pattern, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for _, line in self.lines if pattern.search(line)) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self._cond.wait(min(left, 1.0))
        return True

    def wait_stderr(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in line for line in self.err):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self._cond.wait(min(left, 1.0))
        return True

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def drain(self, timeout: float) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - started


def marked_pids(run_id: str) -> list[int]:
    needle = f"{RUN_KEY}={run_id}".encode()
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if needle in Path(f"/proc/{name}/environ").read_bytes().split(b"\0"):
                    pids.append(int(name))
            except OSError:
                continue
    return pids


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def baseline_rss(work: Path) -> int:
    """RSS of an agent running zero dynos, after it settled."""
    assignments = work / "empty.json"
    assignments.write_text('{"dynos": []}')
    agent = Agent(work, assignments, work / "data-empty")
    try:
        agent.wait_stderr("running 0 dynos", 30)
        return agent.rss_bytes()
    finally:
        agent.drain(30)


def single_boots(agent: Agent, assignments: Path, entries: list[dict], count: int, timeout: float) -> dict:
    """One more web dyno at a time on a VM already running all the others: the delay a router
    sees for an ordinary deploy or restart, without a boot storm around it."""
    delays = []
    base = len(entries)
    for extra in range(1, count + 1):
        name = f"web.{base + extra}"
        entries.append(dict(entries[0], name=name))
        assignments.write_text(json.dumps({"dynos": entries}))
        agent.proc.send_signal(signal.SIGHUP)
        if not agent.wait_count(re.compile(rf"heroku\[{re.escape(name)}\]: State changed from starting to up"), 1, timeout):
            raise RuntimeError(f"{name} did not come up")
        # Its own "listening" line may be read just after the agent's "up" line.
        agent.wait_count(re.compile(rf"app\[{re.escape(name)}\]: listening "), 1, timeout)
        up = listen = None
        for _, line in agent.lines:
            match = UP_LINE.search(line)
            if match and match.group(2) == name:
                up = parse_stamp(match.group(1))
            match = LISTEN_LINE.search(line)
            if match and match.group(1) == name:
                listen = float(match.group(2))
        if up is not None and listen is not None:
            delays.append(1000 * (up - listen))
    return {
        "samples": len(delays),
        "p50": round(percentile(delays, 50), 2),
        "p99": round(percentile(delays, 99), 2),
        "max": round(max(delays), 2),
    }


def run_workload(work: Path, kind: str, count: int, idle: float, timeout: float, singles: int = 0) -> dict:
    run_id = uuid.uuid4().hex[:10]
    slug = make_slug(work)
    dynotype = "web" if kind == "web" else "worker"
    entries = [
        {
            "kind": "formation", "name": f"{dynotype}.{i}", "app": "bench", "type": dynotype,
            "release": 1, "slug": slug, "env": {RUN_KEY: run_id}, "memory_mb": 512,
            "health_check": None,
        }  # fmt: skip
        for i in range(1, count + 1)
    ]
    assignments = work / f"{kind}.json"
    assignments.write_text(json.dumps({"dynos": entries}))
    agent = Agent(work, assignments, work / f"data-{kind}")
    result: dict = {"workload": kind, "dynos": count}
    try:
        pattern = UP_LINE if kind == "web" else WORKER_UP
        ok = agent.wait_count(pattern, count, timeout)
        ups = {}
        for _, line in agent.lines:
            match = pattern.search(line)
            if match:
                ups[match.group(2)] = parse_stamp(match.group(1))
        if not ok:
            raise RuntimeError(f"only {len(ups)} of {count} {kind} dynos up within {timeout:g} s; stderr: {agent.err[-5:]}")
        result["seconds_to_all_up"] = round(max(ups.values()) - agent.launched, 3)
        if kind == "web":
            # The agent reports `up` from its port watcher, sometimes before it has read the
            # dyno's own "listening" line: wait for those too.
            agent.wait_count(LISTEN_LINE, count, timeout)
            listening = {}
            for _, line in agent.lines:
                match = LISTEN_LINE.search(line)
                if match:
                    listening[match.group(1)] = float(match.group(2))
            delays = [1000 * (ups[d] - listening[d]) for d in ups if d in listening]
            result["listen_to_up_ms"] = {
                "samples": len(delays),
                "p50": round(percentile(delays, 50), 2),
                "p99": round(percentile(delays, 99), 2),
                "max": round(max(delays), 2),
            }
        time.sleep(3)  # let the boot storm's last log lines and memory samples settle
        cpu_before, wall_before = agent.cpu_seconds(), time.monotonic()
        time.sleep(idle)
        cpu = agent.cpu_seconds() - cpu_before
        result["idle_cpu_percent"] = round(100 * cpu / (time.monotonic() - wall_before), 3)
        result["agent_rss_bytes"] = agent.rss_bytes()
        result["dyno_processes"] = len(marked_pids(run_id))
        if kind == "web" and singles:
            result["single_boot_listen_to_up_ms"] = single_boots(agent, assignments, entries, singles, timeout)
        result["drain_seconds"] = round(agent.drain(120), 3)
        result["left_running_after_drain"] = len(marked_pids(run_id))
    finally:
        if agent.proc.poll() is None:
            agent.drain(120)
        for pid in marked_pids(run_id):  # safety net: nothing outlives the benchmark
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return result


def print_table(report: dict) -> None:
    base = report["agent_rss_zero_dynos_bytes"]
    rows = [("workload", "dynos", "all up (s)", "listen→up p50/p99 (ms), all at once", "one at a time", "idle CPU %", "RSS/dyno total", "RSS/dyno added", "drain (s)")]
    for r in report["runs"]:
        lat = r.get("listen_to_up_ms")
        one = r.get("single_boot_listen_to_up_ms")
        rows.append((
            r["workload"], str(r["dynos"]), f"{r['seconds_to_all_up']:.1f}",
            f"{lat['p50']:.1f} / {lat['p99']:.1f}" if lat else "-",
            f"{one['p50']:.1f} / {one['p99']:.1f}" if one else "-",
            f"{r['idle_cpu_percent']:.2f}",
            f"{r['agent_rss_bytes'] / r['dynos'] / 1024:.0f} KB",
            f"{(r['agent_rss_bytes'] - base) / r['dynos'] / 1024:.0f} KB",
            f"{r['drain_seconds']:.1f}",
        ))  # fmt: skip
    sup = report.get("supervisord")
    if sup:
        rows.append(("supervisord sleep", str(sup["programs"]), f"{sup['seconds_to_all_running']:.1f}", "-", "-",
                     f"{sup['idle_cpu_percent']:.2f}", f"{sup['rss_bytes'] / sup['programs'] / 1024:.0f} KB", "-", "-"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))


def machine() -> dict:
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}


def write_report(report: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dynos", type=int, default=500)
    parser.add_argument("--workload", choices=["web", "sleep", "both"], default="both")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up if not all up by then")
    parser.add_argument("--singles", type=int, default=30, help="extra web dynos booted one at a time after the storm")
    parser.add_argument("--supervisord-json", type=Path, help="merge a bench/supervisord_bench.py result")
    parser.add_argument("--output", type=Path, default=RESULTS / "dynomgr.json")
    parser.add_argument("--agent-flags", default="", help="extra flags for the agent, e.g. '--memory-interval 20'")
    args = parser.parse_args(argv)
    Agent.extra_flags = args.agent_flags.split()

    work = Path(tempfile.mkdtemp(prefix="dynomgr-bench-", dir="/tmp"))
    work.chmod(0o755)  # dyno users must reach their directories under it
    try:
        report = {
            "benchmark": "dynomgr",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "agent_rss_zero_dynos_bytes": baseline_rss(work),
            "runs": [],
        }
        kinds = ["web", "sleep"] if args.workload == "both" else [args.workload]
        for kind in kinds:
            print(f"running {args.dynos} {kind} dynos ...", flush=True)
            report["runs"].append(run_workload(work, kind, args.dynos, args.idle, args.timeout, args.singles))
        if args.supervisord_json and args.supervisord_json.exists():
            report["supervisord"] = json.loads(args.supervisord_json.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(report)
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
