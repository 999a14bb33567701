"""supervisord with N `sleep` programs on this machine, for comparison with the dyno manager.

Not a dynomesh dependency: install it in a throwaway virtualenv and point this script at it.

    python3 -m venv /tmp/supervisor-venv && /tmp/supervisor-venv/bin/pip install supervisor==4.3.0
    python bench/supervisord_bench.py --supervisord /tmp/supervisor-venv/bin/supervisord
    python bench/dynomgr_bench.py --supervisord-json bench/results/supervisord.json

Measures seconds from launch until every program is RUNNING (supervisord's default
`startsecs=1`: a program counts once it stayed up one second), supervisord's idle CPU over
--idle seconds, and its RSS. Stops everything it started before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def config(work: Path, programs: int) -> Path:
    lines = [
        "[unix_http_server]", f"file={work}/supervisor.sock", "",
        "[supervisord]", f"logfile={work}/supervisord.log", f"pidfile={work}/supervisord.pid",
        "nodaemon=true", "minfds=4096", "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
        "[supervisorctl]", f"serverurl=unix://{work}/supervisor.sock", "",
    ]  # fmt: skip
    for i in range(1, programs + 1):
        lines += [f"[program:sleep{i}]", "command=sleep 86400", "stdout_logfile=NONE", "stderr_logfile=NONE", ""]
    path = work / "supervisord.conf"
    path.write_text("\n".join(lines))
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def running(ctl: list[str]) -> int:
    out = subprocess.run(ctl + ["status"], capture_output=True, text=True, timeout=30).stdout
    return sum(1 for line in out.splitlines() if " RUNNING " in line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--supervisord", required=True, help="path to a supervisord executable")
    parser.add_argument("--programs", type=int, default=500)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "supervisord.json")
    args = parser.parse_args(argv)

    supervisord = Path(args.supervisord)
    supervisorctl = supervisord.with_name("supervisorctl")
    work = Path(tempfile.mkdtemp(prefix="supervisord-bench-"))
    conf = config(work, args.programs)
    ctl = [str(supervisorctl), "-c", str(conf)]
    launched = time.monotonic()
    proc = subprocess.Popen([str(supervisord), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = launched + args.timeout
        while True:
            try:
                count = running(ctl)
            except subprocess.TimeoutExpired:
                count = 0
            if count >= args.programs:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"only {count} of {args.programs} programs RUNNING")
            time.sleep(0.2)  # polling supervisorctl is the only way to ask supervisord
        all_running = time.monotonic() - launched
        time.sleep(3)
        before, wall = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.idle)
        idle_cpu = 100 * (cpu_seconds(proc.pid) - before) / (time.monotonic() - wall)
        result = {
            "benchmark": "supervisord",
            "version": subprocess.run([str(supervisord), "--version"], capture_output=True, text=True).stdout.strip(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "programs": args.programs,
            "seconds_to_all_running": round(all_running, 2),
            "idle_cpu_percent": round(idle_cpu, 3),
            "rss_bytes": rss_bytes(proc.pid),
        }
    finally:
        proc.send_signal(signal.SIGTERM)  # supervisord stops its programs, then exits
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
