#!/usr/bin/env python3
"""Router sweep: the router, nginx and HAProxy side by side from 10 to 5000 connections.

    python bench/router_sweep.py                           # every load, 8 s each
    python bench/router_sweep.py --connections 50,1000 --duration 5 --targets nginx,dynomesh
    python bench/router_sweep.py --targets nginx,haproxy,dynomesh,dynomesh-pure

The same layout and measures as router_bench.py (each proxy pinned to core 0, wrk and the
nginx backend on core 1, CPU = the proxy's utime+stime ÷ requests), over a range of loads:
a 13-byte GET at 10, 50, 200, 1000 and 5000 keep-alive connections, plus a 64 KiB response and
a 4 KiB POST at 50. nginx keeps 1024 idle upstream connections (`keepalive 1024`), so that at
1000 connections it does not open one per request; HAProxy reuses its server connections
(`http-reuse always`); the router runs with its default flags.

Output: a table on stdout, and under bench/results/: router-sweep-<UTC time>.json (every
measure), .md (the table as markdown), and .png (CPU per request, requests per second and p99
against connections; needs matplotlib: `pip install -c constraints.txt -e ".[bench]"`), with
router-sweep-latest.png/.md copies that the README links (or all three at --out, without the
copies). Each run is bounded by --duration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_bench import (RESULTS, TARGETS, Backend, Load, Result, measure,  # noqa: E402
                          post_script, raise_open_files_limit, usable_targets)
from router_path import git_revision  # noqa: E402

CONNECTIONS = (10, 50, 200, 1000, 5000)
SWEEP_TARGETS = ("nginx", "haproxy", "dynomesh")
# Also allowed: the router on its pure-Python twins (DYNOMESH_PURE_PYTHON=1), to compare.
OPTIONAL_TARGETS = ("dynomesh-pure",)


def loads(connections: list[int], work: Path) -> list[Load]:
    sweep = [Load(c) for c in connections]
    return sweep + [Load(50, "/64k", None, "GET 64 KiB"),
                    Load(50, "/", post_script(work, 4096), "POST 4 KiB")]


def row(load: Load, result: Result) -> dict:
    return {"load": load.label, "connections": load.connections, **asdict(result)}


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each row's CPU per request relative to nginx's on the same load."""
    nginx = {(r["load"], r["connections"]): r["cpu_us_per_request"] for r in rows
             if r["target"] == "nginx"}
    for r in rows:
        base = nginx.get((r["load"], r["connections"]))
        cost = r["cpu_us_per_request"]
        r["ratio_to_nginx"] = round(cost / base, 2) if base and cost else None
    return rows


def markdown(rows: list[dict], label: str) -> str:
    lines = [f"Router sweep ({label}): CPU = the proxy's utime+stime per request; "
             "ratio = CPU relative to nginx's on the same load.", "",
             "| load | connections | target | req/s | p50 ms | p99 ms | CPU µs/req | × nginx | non-2xx or socket errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['load']} | {r['connections']} | {r['target']} | {r['rps']:.0f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us_per_request']} | "
                     f"{r['ratio_to_nginx'] or '-'} | {r['errors']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, label: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("router_sweep: no plot (matplotlib is not installed: "
              "pip install -c constraints.txt -e '.[bench]')", file=sys.stderr)
        return False
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = (("cpu_us_per_request", "CPU µs per request"), ("rps", "requests per second"),
              ("p99_ms", "p99 latency (ms)"))
    for ax, (key, title) in zip(axes, panels):
        for target in dict.fromkeys(r["target"] for r in rows):
            points = sorted((r["connections"], r[key]) for r in rows
                            if r["target"] == target and r["load"] == "GET 13 B")
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=target)
        ax.set_xscale("log")
        ax.set_xlabel("keep-alive connections")
        ax.set_title(title)
        if key == "p99_ms":
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    figure.suptitle(f"GET 13 B through one proxy process on one core ({label})")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: python bench/router_sweep.py --duration 5")
    parser.add_argument("--duration", type=int, default=8, help="seconds per measured run (8)")
    parser.add_argument("--connections", default=",".join(map(str, CONNECTIONS)),
                        help="comma-separated connection counts for the 13-byte GET")
    parser.add_argument("--targets", default=",".join(SWEEP_TARGETS),
                        help="comma-separated subset of "
                             + ",".join(SWEEP_TARGETS + OPTIONAL_TARGETS))
    parser.add_argument("--label", default="", help="what this run measures (git revision if empty)")
    parser.add_argument("--out", type=Path,
                        help="where to write, without a suffix: OUT.json, OUT.md, OUT.png "
                             "(default bench/results/router-sweep-<UTC time>, and the -latest "
                             "copies, which only the default updates)")
    args = parser.parse_args()
    wanted = args.targets.split(",")
    if set(wanted) - set(SWEEP_TARGETS + OPTIONAL_TARGETS):
        parser.error(f"targets are among {', '.join(SWEEP_TARGETS + OPTIONAL_TARGETS)}")
    targets = usable_targets([t for t in TARGETS if t.name in wanted], "router_sweep")
    if targets is None:
        return 2
    for target in targets:
        if target.name == "nginx":
            target.upstream_idle = 1024
    raise_open_files_limit()
    label = args.label or git_revision()
    connections = [int(c) for c in args.connections.split(",")]

    rows = []
    with tempfile.TemporaryDirectory(prefix="dynomesh-sweep-") as tmp:
        work = Path(tmp)
        with Backend(work) as backend:
            for load in loads(connections, work):
                for target in targets:
                    print(f"{load.label} × {load.connections}: {target.name} "
                          f"({args.duration} s)...", file=sys.stderr, flush=True)
                    rows.append(row(load, measure(target, work, backend.port, args.duration,
                                                  load)))
    rows = with_ratios(rows)
    table = markdown(rows, label)
    print("\n" + table)
    stem = args.out or RESULTS / f"router-sweep-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    latest = args.out is None  # a run written elsewhere is not the README's newest sweep
    stem.with_suffix(".json").write_text(json.dumps({
        "benchmark": "router-sweep", "label": label, "duration_s": args.duration,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()}, "rows": rows}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(table)
    if latest:
        shutil.copyfile(stem.with_suffix(".md"), RESULTS / "router-sweep-latest.md")
    plotted = plot(rows, stem.with_suffix(".png"), label)
    if plotted and latest:
        shutil.copyfile(stem.with_suffix(".png"), RESULTS / "router-sweep-latest.png")
    print(f"wrote {stem}.json, .md" + (", .png" if plotted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
