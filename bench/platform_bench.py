"""The whole platform on this machine: how fast routes follow dynos, and what a release costs.

Runs `dynomesh control`, `dynomesh router --control` and `dynomesh dynomgr --control` as
separate processes (what `dynomesh up` runs) on free loopback ports with a throwaway home, and
measures:

* route propagation: a web dyno's manager says `State changed from starting to up`; how long
  until the router sends that dyno its first request (the dyno prints `time.time()` when it gets
  it; both clocks are this machine's). The app is scaled between N and N+1 web dynos over and
  over (--events times) while a steady client load (2 keep-alive clients) runs through the
  router, so a dyno that becomes routable is chosen at once (P2C prefers idle dynos);
* `ps:scale web=50` (the real CLI command): seconds until all 50 are `up` on their VM, until the
  control plane's route feed lists all 50 (followed here beside the router), and until the
  router has sent a request to each of the 50 (under 4 clients' steady load; an upper bound);
* requests failed during a release under a steady load (4 keep-alive clients): --deploys deploys
  with preboot, then as many without, each a new slug; each counts requests, failures, the
  slowest request and the p99 of the window from the deploy command to the old dynos gone.

    python bench/platform_bench.py                       # 200 events, web=50, 3 + 3 deploys
    python bench/platform_bench.py --events 50 --scale 20 --deploys 1

Prints a table and writes JSON to bench/results/platform.json. Everything it starts is stopped
before it exits (the dyno manager stops its dynos on SIGTERM).
"""

from __future__ import annotations

import argparse
import http.client
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
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# The dyno: a keep-alive HTTP/1.1 server that answers `<version> <dyno>` and prints the time of
# its first request (the router's first request to it) on stdout.
PROBE = """\
import os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DYNO = os.environ.get("DYNO", "web.?")
VERSION = open("VERSION").read().strip()
first = threading.Lock()
BODY = f"{VERSION} {DYNO}\\n".encode()
# One write per response: head and body in separate small writes would meet Nagle's algorithm
# and the router's delayed ACK on a kept-alive connection (40 ms per request).
RESPONSE = b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(BODY), BODY)

class Probe(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if first.acquire(blocking=False):
            print(f"first request at {time.time():.6f}", flush=True)
        self.wfile.write(RESPONSE)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Probe)
server.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server.serve_forever()
"""

STATE_LINE = re.compile(r"^(\S+) (\S+) heroku\[(web\.\d+)\]: State changed from (\w+) to (\w+)")
FIRST_LINE = re.compile(r"^\S+ (\S+) app\[(web\.\d+)\]: first request at (\d+\.\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dynomesh(*args: str) -> list[str]:
    return [sys.executable, "-m", "dynomesh", *args]


class Lines:
    """A child process whose stdout lines are kept and can be waited on."""

    def __init__(self, argv: list[str], env: dict[str, str], on_line=None,
                 quiet_stdout: bool = False) -> None:
        # quiet_stdout: only stderr is read (the router's stdout is its access log).
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL if quiet_stdout else subprocess.PIPE,
            stderr=subprocess.PIPE if quiet_stdout else subprocess.STDOUT)
        self.stream = self.proc.stderr if quiet_stdout else self.proc.stdout
        self.lines: list[str] = []
        self.on_line = on_line
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in iter(self.stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.changed:
                self.lines.append(line)
                if self.on_line is not None:
                    self.on_line(line)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def mark(self) -> int:
        with self.changed:
            return len(self.lines)

    def wait_for(self, pattern: str | re.Pattern, after: int = 0,
                 timeout: float = 60.0) -> tuple[re.Match, int]:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self.changed:
            index = after
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    index += 1
                    if match:
                        return match, index
                left = deadline - time.monotonic()
                if left <= 0 or not self.reader.is_alive():
                    raise RuntimeError(f"no line matching {regex.pattern!r}:\n"
                                       + "\n".join(self.lines[-20:]))
                self.changed.wait(min(left, 0.5))

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)


def stamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Platform:
    """control + router + dynomgr, started one by one (as `dynomesh up` does)."""

    def __init__(self, home: Path, take_out_grace: float) -> None:
        self.home = home
        self.api_port, self.http_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
                        DYNOMESH_HOME=str(home))
        self.parts: list[Lines] = []
        self.first_requests: dict[str, list[float]] = {}  # dyno -> times, in order
        control = self._start(dynomesh(
            "control", "--listen", f"127.0.0.1:{self.api_port}", "--home", str(home),
            "--router-port", str(self.http_port), "--take-out-grace", str(take_out_grace)))
        control.wait_for(r"^dynomesh control: listening on ")
        self.token = json.loads((home / "credentials.json").read_text())["token"]
        for role, extra in (("router", ()), ("dynomgr", ("--vm-id", "bench-vm"))):
            secret = self.cli("tokens:create", "--role", role, *extra).strip()
            (home / f"{role}.token").write_text(secret + "\n")
            (home / f"{role}.token").chmod(0o600)
        router = self._start(dynomesh(
            "router", "--listen", f"127.0.0.1:{self.http_port}", "--admin", "off",
            "--control", self.api, "--token-file", str(home / "router.token")),
            quiet_stdout=True)
        self.dynomgr = self._start(dynomesh(
            "dynomgr", "--control", self.api, "--token-file", str(home / "dynomgr.token"),
            "--admin", f"127.0.0.1:{free_port()}", "--data-dir", str(home / "dynos"),
            "--address", "127.0.0.1",
            # 50 dynos of 512 MB are more than this machine's memory; these use ~20 MB each.
            "--capacity-mb", "65536"), on_line=self._dyno_line)
        router.wait_for(r"^dynomesh router: ready on ")
        self.dynomgr.wait_for(r"dynomgr: running \d+ dynos from assignment feed")

    def _start(self, argv: list[str], on_line=None, quiet_stdout: bool = False) -> Lines:
        part = Lines(argv, self.env, on_line, quiet_stdout)
        self.parts.append(part)
        return part

    def _dyno_line(self, line: str) -> None:
        match = FIRST_LINE.search(line)
        if match:
            self.first_requests.setdefault(match.group(2), []).append(float(match.group(3)))

    def cli(self, *args: str) -> str:
        done = subprocess.run(dynomesh(*args), env=self.env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"dynomesh {' '.join(args)}: {done.stderr}")
        return done.stdout

    def call(self, method: str, path: str, body: dict | None = None):
        request = urllib.request.Request(
            self.api + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def scale(self, app: str, quantity: int) -> None:
        self.call("PATCH", f"/apps/{app}/formation/web", {"quantity": quantity})

    def web_up(self, app: str, count: int, release: int | None = None) -> bool:
        dynos = self.call("GET", f"/apps/{app}/dynos")
        return len(dynos) == count and all(
            d["state"] == "up" and d["serving"] and d["taking_out"] is None
            and (release is None or d["release"]["version"] == release) for d in dynos)

    def wait(self, check, what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        pause = 0.02
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(pause)  # polling the API, with back-off
            pause = min(pause * 1.5, 0.2)

    def stop(self) -> None:
        for part in reversed(self.parts[1:]):  # router, dynomgr (stops every dyno)...
            part.stop()
        self.parts[0].stop()  # ... then the control plane


class Load:
    """`clients` threads sending GETs on keep-alive connections until stopped (bounded)."""

    def __init__(self, port: int, host: str, clients: int, max_seconds: float = 600.0) -> None:
        self.port, self.host = port, host
        self.samples: list[tuple[float, float, str]] = []  # (start, seconds, outcome)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        connection = None
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            started = time.time()
            begun = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=90)
                connection.request("GET", "/", headers={"Host": self.host})
                response = connection.getresponse()
                body = response.read()
                outcome = body.decode().strip() if response.status == 200 else f"{response.status}"
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                outcome = f"error {type(error).__name__}"
                if connection is not None:
                    connection.close()
                connection = None
            with self.lock:
                self.samples.append((started, time.perf_counter() - begun, outcome))
        if connection is not None:
            connection.close()

    def window(self, start: float, end: float) -> list[tuple[float, float, str]]:
        with self.lock:
            return [s for s in self.samples if start <= s[0] <= end]

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(120)


def write_probe(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Procfile").write_text("web: python3 probe.py\n")
    (directory / "probe.py").write_text(PROBE)
    (directory / "VERSION").write_text(version + "\n")
    return directory


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


# --- the measurements -----------------------------------------------------------------------

def propagation(bench: Platform, work: Path, events: int, base: int) -> dict:
    app = "probe"
    bench.cli("apps:create", app, "--no-link")
    bench.cli("deploy", str(write_probe(work / "probe", "v1")), "--app", app)
    bench.scale(app, base)
    bench.wait(lambda: bench.web_up(app, base), f"{base} web dynos up")
    new = f"web.{base + 1}"
    feed = RouteFeedLog(bench, app)
    load = Load(bench.http_port, f"{app}.localhost", clients=2)
    delays, published, boots = [], [], []
    try:
        for event in range(events):
            mark = bench.dynomgr.mark()
            seen = len(bench.first_requests.get(new, []))
            asked = time.time()
            bench.scale(app, base + 1)
            up, mark = bench.dynomgr.wait_for(
                rf"^(\S+) {app} heroku\[{re.escape(new)}\]: State changed from starting to up",
                mark)
            up_at = stamp(up.group(1))
            deadline = time.monotonic() + 30
            with bench.dynomgr.changed:
                while len(bench.first_requests.get(new, [])) <= seen:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{new} got no request within 30 s of being up")
                    bench.dynomgr.changed.wait(0.5)
                first = bench.first_requests[new][seen]
            delays.append(first - up_at)
            published.append(feed.first(base + 1, asked) - up_at)
            boots.append(up_at - asked)
            bench.scale(app, base)
            bench.dynomgr.wait_for(
                rf" {app} heroku\[{re.escape(new)}\]: State changed from stopping to down", mark)
            if (event + 1) % 25 == 0:
                print(f"  {event + 1}/{events} scale events", file=sys.stderr)
    finally:
        load.stop()
        feed.close()
    failures = sum(1 for _, _, outcome in load.samples if not outcome.startswith("v1 "))
    ms = [d * 1000 for d in delays]
    feed_ms = [d * 1000 for d in published]
    return {
        "events": events, "base_web_dynos": base, "load_clients": 2,
        "propagation_ms": {"p50": round(statistics.median(ms), 2),
                           "p99": round(percentile(ms, 0.99), 2),
                           "max": round(max(ms), 2), "min": round(min(ms), 2),
                           "mean": round(statistics.fmean(ms), 2)},
        # Of which: the dyno manager's report, the control plane's commit and its route feed
        # line (received by a follower beside the router).
        "up_to_route_feed_line_ms": {"p50": round(statistics.median(feed_ms), 2),
                                     "p99": round(percentile(feed_ms, 0.99), 2)},
        "scale_to_up_ms_p50": round(statistics.median(boots) * 1000, 1),
        "requests_during": len(load.samples), "failed_requests_during": failures,
        "samples_ms": [round(value, 3) for value in ms],
    }


class RouteFeedLog:
    """Follows the control plane's route feed beside the router (a user token may) and keeps,
    for one app, when each line arrived and how many dynos it listed."""

    def __init__(self, bench: Platform, app: str) -> None:
        self.app = app
        self.lines: list[tuple[float, int]] = []  # (arrival, routable dynos)
        self.changed = threading.Condition()
        self.connection = http.client.HTTPConnection("127.0.0.1", bench.api_port, timeout=120)
        self.connection.request("GET", "/feeds/routes",
                                headers={"Authorization": f"Bearer {bench.token}"})
        self.response = self.connection.getresponse()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for raw in iter(self.response.readline, b""):
                arrived = time.time()
                for entry in json.loads(raw).get("apps", ()):
                    if entry["name"] == self.app:
                        with self.changed:
                            self.lines.append((arrived, len(entry["dynos"])))
                            self.changed.notify_all()
        except (OSError, ValueError, http.client.HTTPException):
            return  # closed by close(): the measurement is over

    def first(self, count: int, after: float, timeout: float = 60.0) -> float:
        """When the first line after `after` listing `count` dynos arrived."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for arrived, listed in self.lines:
                    if arrived >= after and listed == count:
                        return arrived
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the route feed never listed {count} dynos")
                self.changed.wait(0.5)

    def close(self) -> None:
        # The reader sees end of stream and returns; only then close the connection: closing
        # it under a readline in progress leaves http.client without its file (AttributeError).
        self.connection.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.connection.close()


def scale_out(bench: Platform, count: int) -> dict:
    app = "probe"
    bench.scale(app, 1)
    bench.wait(lambda: bench.web_up(app, 1), "1 web dyno up")
    feed = RouteFeedLog(bench, app)
    load = Load(bench.http_port, f"{app}.localhost", clients=4)
    known = {name: len(times) for name, times in bench.first_requests.items()}
    mark = bench.dynomgr.mark()
    try:
        asked = time.time()
        bench.cli("ps:scale", f"web={count}", "--app", app)
        returned = time.time()
        ups = {}
        while len(ups) < count - 1:
            match, mark = bench.dynomgr.wait_for(
                rf"^(\S+) {app} heroku\[(web\.\d+)\]: State changed from starting to up",
                mark, 120)
            ups[match.group(2)] = stamp(match.group(1))
        feed_all = feed.first(count, asked)
        names = [f"web.{n}" for n in range(2, count + 1)]

        def every_dyno_asked() -> bool:
            with bench.dynomgr.changed:
                return all(len(bench.first_requests.get(n, [])) > known.get(n, 0) for n in names)

        bench.wait(every_dyno_asked, f"a request to each of the {count} dynos")
        with bench.dynomgr.changed:
            router_all = max(bench.first_requests[n][known.get(n, 0)] for n in names)
    finally:
        load.stop()
        feed.close()
    failures = sum(1 for _, _, outcome in load.samples if not outcome.startswith("v1 "))
    bench.scale(app, 1)
    bench.wait(lambda: bench.web_up(app, 1), "back to 1 web dyno")
    return {
        "dynos": count, "from": 1, "load_clients": 4,
        "cli_returned_s": round(returned - asked, 3),
        "all_up_on_vm_s": round(max(ups.values()) - asked, 3),
        "route_feed_lists_all_s": round(feed_all - asked, 3),
        "router_sent_each_a_request_s": round(router_all - asked, 3),
        "requests_during": len(load.samples), "failed_requests_during": failures,
    }


def deploys(bench: Platform, work: Path, count: int) -> list[dict]:
    app = "rollout"
    bench.cli("apps:create", app, "--no-link")
    version = 1
    bench.cli("deploy", str(write_probe(work / "rollout-1", "r1")), "--app", app)
    bench.scale(app, 2)
    bench.wait(lambda: bench.web_up(app, 2), "2 web dynos up")
    runs = []
    load = Load(bench.http_port, f"{app}.localhost", clients=4)
    try:
        for preboot in (True, False):
            bench.cli("features:" + ("enable" if preboot else "disable"), "preboot", "--app", app)
            for _ in range(count):
                version += 1
                source = write_probe(work / f"rollout-{version}", f"r{version}")
                start = time.time()
                bench.cli("deploy", str(source), "--app", app)
                bench.wait(lambda: bench.web_up(app, 2, release=version),
                           f"v{version} on 2 web dynos, the old ones gone")
                end = time.time()
                window = load.window(start, end)
                # Requests sent after the last new answer are not part of the release anymore.
                served = [s for s in window if s[2].startswith(f"r{version} ")]
                failed = [s for s in window if not re.match(r"r\d+ web\.\d+$", s[2])]
                seconds = [s[1] for s in window]
                runs.append({
                    "preboot": preboot, "release": version, "window_s": round(end - start, 2),
                    "requests": len(window), "failed": len(failed),
                    "failures": sorted({s[2] for s in failed}),
                    "answered_by_new_release": len(served),
                    "slowest_ms": round(max(seconds) * 1000, 1),
                    "p99_ms": round(percentile(seconds, 0.99) * 1000, 1),
                })
    finally:
        load.stop()
    return runs


# --- the run --------------------------------------------------------------------------------

def conditions(take_out_grace: float) -> dict:
    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
        "store": "sqlite", "take_out_grace_s_scale_phases": take_out_grace,
        "take_out_grace_s_deploys": 2.0,
        "note": "control plane, router, dyno manager, dynos and the load clients share this "
                "machine's cores with each other (and with whatever else runs on it)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200, help="scale events (default 200)")
    parser.add_argument("--base", type=int, default=1,
                        help="web dynos between events: scale base <-> base+1 (default 1)")
    parser.add_argument("--scale", type=int, default=50, help="ps:scale web=N (default 50)")
    parser.add_argument("--deploys", type=int, default=3,
                        help="deploys with preboot, then as many without (default 3)")
    parser.add_argument("--take-out-grace", type=float, default=0.25,
                        help="control plane's take-out grace for the scale phases, to keep "
                             "200 scale-downs short (default 0.25; deploys use the default 2)")
    parser.add_argument("--output", type=Path, default=RESULTS / "platform.json")
    args = parser.parse_args(argv)

    results = {"conditions": conditions(args.take_out_grace)}
    for phase, grace in (("scale", args.take_out_grace), ("deploy", 2.0)):
        home = Path(tempfile.mkdtemp(prefix="dynomesh-platform-bench-", dir="/tmp"))
        home.chmod(0o755)  # dyno users pass through it to their directories
        bench = None
        try:
            bench = Platform(home, grace)
            if phase == "scale":
                print(f"route propagation over {args.events} scale events...", file=sys.stderr)
                results["propagation"] = propagation(bench, home / "src", args.events, args.base)
                print(f"ps:scale web={args.scale}...", file=sys.stderr)
                results["scale_out"] = scale_out(bench, args.scale)
            else:
                print(f"{args.deploys} deploys with preboot and {args.deploys} without...",
                      file=sys.stderr)
                results["deploys"] = deploys(bench, home / "src", args.deploys)
        finally:
            if bench is not None:
                bench.stop()
            shutil.rmtree(home, ignore_errors=True)

    results["conditions"]["load_average_at_end"] = os.getloadavg()
    report(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def report(results: dict) -> None:
    p = results["propagation"]
    s = results["scale_out"]
    print(f"\nroute propagation: dyno manager says up -> router's first request to it "
          f"({p['events']} events, web {p['base_web_dynos']} <-> {p['base_web_dynos'] + 1})")
    print(f"  {'':<26} {'p50':>8} {'p99':>8} {'max':>8} {'min':>8}")
    q = p["propagation_ms"]
    print(f"  {'up -> first request':<26} {q['p50']:>6.1f}ms {q['p99']:>6.1f}ms "
          f"{q['max']:>6.1f}ms {q['min']:>6.1f}ms")
    f = p["up_to_route_feed_line_ms"]
    print(f"  {'  of which up -> feed line':<26} {f['p50']:>6.1f}ms {f['p99']:>6.1f}ms")
    print(f"  failed requests meanwhile: {p['failed_requests_during']} of {p['requests_during']}")
    print(f"\nps:scale web={s['dynos']} (from 1), seconds after the command")
    print(f"  {'all up on VM':>14} {'feed lists all':>15} {'router hit each':>16}  failed requests")
    print(f"  {s['all_up_on_vm_s']:>14.2f} {s['route_feed_lists_all_s']:>15.2f} "
          f"{s['router_sent_each_a_request_s']:>16.2f}  {s['failed_requests_during']} of "
          f"{s['requests_during']}")
    print("\nreleases under steady load (4 keep-alive clients, 2 web dynos)")
    print(f"  {'kind':<8} {'window':>7} {'requests':>9} {'failed':>7} {'slowest':>9} {'p99':>8}")
    for run in results["deploys"]:
        kind = "preboot" if run["preboot"] else "plain"
        print(f"  {kind:<8} {run['window_s']:>6.2f}s {run['requests']:>9} {run['failed']:>7} "
              f"{run['slowest_ms']:>7.0f}ms {run['p99_ms']:>6.0f}ms")


if __name__ == "__main__":
    sys.exit(main())
