#!/usr/bin/env python3
"""Router benchmark: wrk through nginx, HAProxy, Caddy and the dynomesh router, side by side.

    python bench/router_bench.py                 # all targets, 10 s each
    python bench/router_bench.py --duration 5 --targets nginx,dynomesh --runs 3
    python bench/router_bench.py --targets nginx,dynomesh,dynomesh-pure --before ../old --runs 3

`dynomesh-pure` is the router on its pure-Python twins (DYNOMESH_PURE_PYTHON=1); `--before
TREE` adds the router of another checkout (`git worktree add ../old REV`) as `dynomesh-before`.
The runs of all targets are interleaved, so a change is measured paired, under the same load.

Layout on a 2-core machine: each proxy is pinned to core 0 (`taskset`); wrk and the backend
(an nginx that answers every request with a fixed 13-byte body, cheap enough never to be the
bottleneck) share core 1. For each target the script reports requests/s and latency (p50,
p99) from wrk, and the proxy's own CPU time per request: utime+stime of the proxy's processes
over the measured run (from /proc) divided by the requests wrk completed. The ratio column is
that cost relative to nginx's.

Every proxy is configured comparably: HTTP/1.1 keep-alive to the client and to the backend
(pooled), X-Forwarded-For and a request id added; nginx and dynomesh write an access log line
per request (buffered, as dynomesh's is); dynomesh also serves /metrics from its counters.
HAProxy and Caddy log nothing by default and are run that way.

Results: a table on stdout and JSON under bench/results/ (router-<UTC time>.json).
All traffic is on 127.0.0.1; each run is bounded by --duration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
INSTALL_HINT = "apt-get install nginx-light haproxy caddy wrk"
PROXY_CORE, LOAD_CORE = "0", "1"
BODY = "Hello, world!"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """Stop a proxy started in its own process group: SIGTERM (it drains and exits), then
    SIGKILL if it has not gone within `timeout` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"not listening on port {port} after {timeout} s")


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (nginx's workers are children of its master)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        rest = fields[fields.rindex(")") + 2:].split()
        total += int(rest[11]) + int(rest[12])  # utime, stime (fields 14 and 15)
    return total / TICKS


# -- configurations --------------------------------------------------------------------------

def backend_conf(work: Path, port: int) -> Path:
    conf = work / "backend.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {work}/backend.pid;
error_log {work}/backend-error.log;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    server {{
        listen 127.0.0.1:{port};
        default_type text/plain;
        location / {{ return 200 "{BODY}"; }}
        location = /64k {{ root {work}/static; }}
    }}
}}
""")
    static = work / "static"
    static.mkdir(exist_ok=True)
    work.chmod(0o755)  # nginx's workers (not root) read the file
    (static / "64k").write_bytes(b"x" * 65536)
    return conf


def nginx_conf(work: Path, port: int, backend: int, upstream_idle: int = 64) -> Path:
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 16384; }}
http {{
    access_log {work}/nginx-access.log combined buffer=64k flush=1s;
    keepalive_requests 10000000;
    upstream app {{ server 127.0.0.1:{backend}; keepalive {upstream_idle}; keepalive_requests 10000000; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Request-Id $request_id;
        }}
    }}
}}
""")
    return conf


def haproxy_conf(work: Path, port: int, backend: int) -> Path:
    conf = work / "haproxy.cfg"
    conf.write_text(f"""
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend web
    bind 127.0.0.1:{port}
    option forwardfor
    http-request set-header X-Request-Id %[uuid()]
    default_backend app
backend app
    server web1 127.0.0.1:{backend}
""")
    return conf


def caddy_conf(work: Path, port: int, backend: int) -> Path:
    conf = work / "Caddyfile"
    conf.write_text(f"""{{
    admin off
    auto_https off
}}
http://:{port} {{
    bind 127.0.0.1
    reverse_proxy 127.0.0.1:{backend}
}}
""")
    return conf


def git_revision(tree: Path = REPO) -> str:
    done = subprocess.run(["git", "-C", str(tree), "describe", "--always", "--dirty"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def routes_file(work: Path, backend: int) -> Path:
    path = work / "routes.json"
    path.write_text(json.dumps({"apps": [{
        "name": "app1", "hosts": ["app1.localhost"], "state": "running",
        "dynos": [{"name": "web.1", "address": f"127.0.0.1:{backend}"}]}]}))
    return path


@dataclass
class Target:
    name: str
    binary: str | None  # the executable that must be installed
    extra: tuple[str, ...] = ()  # more arguments (dynomesh-ship: where its lines go)
    upstream_idle: int = 64  # nginx: idle upstream connections kept (`keepalive N`)
    tree: Path = REPO  # dynomesh: the checkout whose router runs (--before: another one)
    env: dict = field(default_factory=dict)  # dynomesh: more environment (dynomesh-pure)

    def command(self, work: Path, port: int, backend: int) -> tuple[list[str], dict, Path | None]:
        """-> (argv, extra environment, file for stdout)."""
        if self.name == "nginx":
            conf = nginx_conf(work, port, backend, self.upstream_idle)
            return ["nginx", "-c", str(conf), "-p", str(work)], {}, None
        if self.name == "haproxy":
            return ["haproxy", "-db", "-f", str(haproxy_conf(work, port, backend))], {}, None
        if self.name == "caddy":
            return (["caddy", "run", "--config", str(caddy_conf(work, port, backend)),
                     "--adapter", "caddyfile"],
                    {"GOMAXPROCS": "1", "XDG_DATA_HOME": str(work), "XDG_CONFIG_HOME": str(work),
                     "HOME": str(work)}, None)
        if self.name.startswith("dynomesh"):
            admin = free_port()
            return ([sys.executable, "-m", "dynomesh", "router", "--listen", f"127.0.0.1:{port}",
                     "--admin", f"127.0.0.1:{admin}", "--routes", str(routes_file(work, backend)),
                     *self.extra],
                    {"PYTHONPATH": str(self.tree), **self.env}, work / f"{self.name}-access.log")
        raise ValueError(self.name)


TARGETS = [Target("direct", None), Target("nginx", "nginx"), Target("haproxy", "haproxy"),
           Target("caddy", "caddy"), Target("dynomesh", None), Target("dynomesh-ship", None),
           Target("dynomesh-ship-drains", None),
           # The router on its pure-Python twins (router/compiled.py), beside the compiled one.
           Target("dynomesh-pure", None, env={"DYNOMESH_PURE_PYTHON": "1"})]


class LogControlPlane:
    """For dynomesh-ship: a `dynomesh control` (SQLite) on the load core that the router ships
    its lines to, with the app and a router token."""

    def __init__(self, work: Path, name: str = "control", drains: tuple[str, ...] = ()) -> None:
        self.home = work / name
        self.drains = drains  # drain URLs added to app1
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> tuple[str, ...]:
        """-> the router arguments that ship to it."""
        self.proc = subprocess.Popen(
            ["taskset", "-c", LOAD_CORE, sys.executable, "-m", "dynomesh", "control",
             "--listen", f"127.0.0.1:{self.port}", "--home", str(self.home)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
        ready = self.proc.stdout.readline()
        if "listening on" not in ready:
            raise RuntimeError(f"dynomesh control did not start: {ready!r}")
        # Keep reading its stdout (app log lines) so that it never blocks on the pipe.
        import threading

        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        user = json.loads((self.home / "credentials.json").read_text())["token"]
        self._call("POST", "/apps", user, {"name": "app1"})
        for url in self.drains:
            self._call("POST", "/apps/app1/drains", user, {"url": url})
        token = self._call("POST", "/tokens", user, {"role": "router"})["token"]
        token_file = self.home / "router.token"
        token_file.write_text(token + "\n")
        return ("--log-ship", self.url, "--token-file", str(token_file))

    def _call(self, method: str, path: str, token: str, body: dict) -> dict:
        import urllib.request

        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         method=method, headers={
                                             "Authorization": f"Bearer {token}",
                                             "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def lines_stored(self) -> int:
        """How many lines the control plane holds for app1 (at most its last 1500)."""
        import urllib.request

        user = json.loads((self.home / "credentials.json").read_text())["token"]
        request = urllib.request.Request(self.url + "/apps/app1/log?lines=1500",
                                         headers={"Authorization": f"Bearer {user}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return len(response.read().splitlines())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


@dataclass
class Result:
    target: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float | None
    errors: int


def _latency_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclass(frozen=True)
class Load:
    """What wrk sends: how many connections, to which path, and (POST) a wrk script."""
    connections: int = 32
    path: str = "/"
    script: Path | None = None
    label: str = "GET 13 B"


def post_script(work: Path, size: int) -> Path:
    path = work / f"post-{size}.lua"
    path.write_text(f'wrk.method = "POST"\nwrk.body = string.rep("x", {size})\n'
                    'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    return path


def run_wrk(port: int, seconds: float, load: Load) -> dict:
    script = ["-s", str(load.script)] if load.script else []
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{load.connections}",
            f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency", *script,
            "-H", "Host: app1.localhost", f"http://127.0.0.1:{port}{load.path}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    requests = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if requests is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                              out)
    return {
        "requests": int(requests.group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _latency_ms(latency["50"]), "p99_ms": _latency_ms(latency["99"]),
        "errors": (int(errors.group(1)) if errors else 0)
        + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
    }


def measure(target: Target, work: Path, backend_port: int, duration: float,
            load: Load) -> Result:
    if target.name == "direct":
        port, proc = backend_port, None
    else:
        port = free_port()
        argv, env, stdout_path = target.command(work, port, backend_port)
        stdout = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
        proc = subprocess.Popen(["taskset", "-c", PROXY_CORE, *argv], stdout=stdout,
                                stderr=open(work / f"{target.name}.stderr", "wb"),
                                env={**os.environ, **env}, start_new_session=True)
    try:
        if proc is not None:
            wait_for_port(port, proc)
        run_wrk(port, min(2, duration), load)  # warm up: pools, caches
        pids = process_tree(proc.pid) if proc is not None else []
        before = cpu_seconds(pids)
        started = time.monotonic()
        wrk = run_wrk(port, duration, load)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pids) - before if proc is not None else None
    except RuntimeError as error:
        stderr = (work / f"{target.name}.stderr").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{target.name}: {error}\n{stderr}") from None
    finally:
        if proc is not None:
            stop_group(proc, 10)
    per_request = None if cpu is None else cpu / wrk["requests"] * 1e6
    return Result(target.name, wrk["requests"], round(elapsed, 2), wrk["rps"], wrk["p50_ms"],
                  wrk["p99_ms"], None if per_request is None else round(per_request, 2),
                  wrk["errors"])


class Backend:
    """The nginx every proxy forwards to, on the load core: 13 bytes at `/`, 64 KiB at `/64k`."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Backend":
        self.proc = subprocess.Popen(
            ["taskset", "-c", LOAD_CORE, "nginx", "-c", str(backend_conf(self.work, self.port)),
             "-p", str(self.work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        wait_for_port(self.port, self.proc)
        return self

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)


def run_rounds(targets: list[Target], work: Path, backend_port: int, args) -> list[list[Result]]:
    runs = []
    for run in range(args.runs):
        results = []
        for target in targets:
            print(f"run {run + 1}/{args.runs}: {target.name} ({args.duration:g} s)...",
                  file=sys.stderr, flush=True)
            results.append(measure(target, work, backend_port, args.duration,
                                   Load(args.connections)))
        runs.append(results)
    return runs


def raise_open_files_limit(wanted: int = 65536) -> None:
    """wrk and the proxies (children inherit it) need a descriptor per connection, two for a
    proxy; the usual soft limit of 1024 is too few at 1000 connections."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def missing_tools(targets: list[Target]) -> list[str]:
    needed = {"wrk", "taskset", "nginx"} | {t.binary for t in targets if t.binary}
    return sorted(tool for tool in needed if shutil.which(tool) is None)


def summarise(runs: list[list[Result]]) -> list[dict]:
    """Median of each measure over the runs, plus min and max of the CPU cost."""
    rows = []
    names = [r.target for r in runs[0]]
    for name in names:
        results = [r for run in runs for r in run if r.target == name]
        cpu = [r.cpu_us_per_request for r in results if r.cpu_us_per_request is not None]
        rows.append({
            "target": name,
            "rps": round(statistics.median(r.rps for r in results)),
            "p50_ms": round(statistics.median(r.p50_ms for r in results), 3),
            "p99_ms": round(statistics.median(r.p99_ms for r in results), 3),
            "cpu_us_per_request": round(statistics.median(cpu), 2) if cpu else None,
            "cpu_us_min": min(cpu) if cpu else None,
            "cpu_us_max": max(cpu) if cpu else None,
            "errors": sum(r.errors for r in results),
        })
    nginx = next((row for row in rows if row["target"] == "nginx"), None)
    for row in rows:
        base = nginx and nginx["cpu_us_per_request"]
        cost = row["cpu_us_per_request"]
        row["ratio_to_nginx"] = round(cost / base, 2) if base and cost else None
    return rows


def print_table(rows: list[dict], runs: int) -> None:
    print(f"\n{'target':<20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11}"
          f" {'(min-max)':>13} {'× nginx':>8} {'errors':>7}")
    for row in rows:
        cpu = row["cpu_us_per_request"]
        spread = f"{row['cpu_us_min']:.1f}-{row['cpu_us_max']:.1f}" if cpu and runs > 1 else ""
        print(f"{row['target']:<20} {row['rps']:>9} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} "
              f"{cpu if cpu is not None else '-':>11} {spread:>13} "
              f"{row['ratio_to_nginx'] if row['ratio_to_nginx'] else '-':>8} {row['errors']:>7}")


def usable_targets(targets: list[Target], program: str) -> list[Target] | None:
    """The targets whose tools are installed (saying which are skipped), or None when the
    benchmark cannot run at all here."""
    missing = missing_tools(targets)
    if {"wrk", "taskset", "nginx"} & set(missing):
        print(f"{program}: missing {', '.join(missing)}; install with: {INSTALL_HINT}",
              file=sys.stderr)
        return None
    for tool in missing:
        print(f"{program}: skipping {tool}: not installed (install with: {INSTALL_HINT})",
              file=sys.stderr)
    if os.cpu_count() and os.cpu_count() < 2:
        print(f"{program}: needs 2 cores (proxy on one, wrk and backend on the other)",
              file=sys.stderr)
        return None
    return [t for t in targets if t.binary not in missing]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: python bench/router_bench.py --runs 3")
    parser.add_argument("--duration", type=int, default=10.0, help="seconds per run (10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--runs", type=int, default=1, help="runs of every target (1)")
    parser.add_argument("--targets", default=",".join(t.name for t in TARGETS),
                        help="comma-separated subset of " + ",".join(t.name for t in TARGETS))
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/router-*.json)")
    parser.add_argument("--before", type=Path, metavar="TREE",
                        help="also run the router of this checkout (target dynomesh-before), "
                             "interleaved with the others: before and after a change, paired")
    parser.add_argument("--nginx-keepalive", type=int, default=64, metavar="N",
                        help="nginx's idle upstream connections (`keepalive N`, default 64)")
    args = parser.parse_args()
    wanted = args.targets.split(",")
    if args.before is not None:
        TARGETS.append(Target("dynomesh-before", None, tree=args.before.resolve()))
        wanted.append("dynomesh-before")
    targets = [t for t in TARGETS if t.name in wanted]
    for target in targets:
        target.upstream_idle = args.nginx_keepalive
    unknown = set(wanted) - {t.name for t in TARGETS}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    targets = usable_targets(targets, "router_bench")
    if targets is None:
        return 2
    raise_open_files_limit()

    runs: list[list[Result]] = []
    with tempfile.TemporaryDirectory(prefix="dynomesh-bench-") as tmp:
        work = Path(tmp)
        controls: list[LogControlPlane] = []
        # dynomesh-ship-drains: app1 has two log drains whose receivers are gone bad, one
        # that accepts and never reads (a listening socket nobody accepts from) and one that
        # is not listening; the router's work should not change at all.
        stuck = socket.socket()
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(1)
        drains = (f"syslog://127.0.0.1:{stuck.getsockname()[1]}",
                  f"syslog://127.0.0.1:{free_port()}")
        for target in targets:
            if target.name in ("dynomesh-ship", "dynomesh-ship-drains"):
                controls.append(LogControlPlane(
                    work, target.name, drains if target.name.endswith("drains") else ()))
                target.extra = controls[-1].start()
        try:
            with Backend(work) as backend:
                runs = run_rounds(targets, work, backend.port, args)
            if any(control.lines_stored() == 0 for control in controls):
                raise RuntimeError("dynomesh-ship: no line reached the control plane")
        finally:
            for control in controls:
                control.stop()
            stuck.close()
    rows = summarise(runs)
    print_table(rows, args.runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"router-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({
        "benchmark": "router", "duration_s": args.duration, "connections": args.connections,
        "runs": args.runs, "revision": git_revision(), "nginx_keepalive": args.nginx_keepalive,
        "before": str(args.before) if args.before else None,
        "before_revision": git_revision(args.before) if args.before else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "summary": rows, "raw": [[asdict(r) for r in run] for run in runs],
    }, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
