"""Driving the whole platform from outside, as a user does: real processes, the real `dynomesh`
command, HTTP through the real router.

- `ProcessLines`: a process whose output lines a test waits on (never a sleep).
- `Up`: a running `dynomesh up` on free ports with its own home and data directory.
- `Cli`: the `dynomesh` user commands against one home's credentials.
- `Api`: the control plane's REST API read directly, for cheap polling of real state
  (a CLI call costs a Python start-up, too much for a tight poll on two shared cores).
- `RouterClient` and `LoadLoop`: requests through the router by `Host`, one at a time or as a
  bounded steady load whose every outcome is kept.
- `poll`: bounded polling of real state until a predicate holds.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dynomesh.poll import POLL
from tests.conftest import REPO_ROOT, dynomesh_argv, dynomesh_env, free_port

EXAMPLES = REPO_ROOT / "examples"
T = TypeVar("T")


def poll(check: Callable[[], T], what: str, *, timeout: float = 30.0) -> T:
    """Call `check` until it returns something truthy; fail naming `what` after `timeout`.

    The pause grows to 0.25 s (`POLL`) so that a long wait costs little CPU on a shared
    machine."""
    deadline = time.monotonic() + timeout
    pauses = POLL.start()
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} "
                                 f"(last seen: {last!r})")
        time.sleep(pauses.next_delay())  # bounded polling of real state, not a wait for time


def shared_tmpdir(prefix: str) -> Path:
    """A directory in /tmp that dyno users can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def children(pid: int) -> list[int]:
    """The direct children of `pid` (Linux /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def dyno_processes(data_dir: Path) -> list[int]:
    """Pids of live processes whose $HOME is under `data_dir`: a dyno's processes (the dyno
    manager makes each dyno's directory its $HOME), wherever they were reparented to."""
    prefix = f"HOME={data_dir}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or a kernel thread
        if any(item.startswith(prefix) for item in environ.split(b"\0")) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


# --- processes whose lines a test waits on --------------------------------------------------

class ProcessLines:
    """A child process; its stdout and stderr lines collected as they come."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str = "") -> None:
        self.name = name or " ".join(argv[2:4])
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def mark(self) -> int:
        """A position in the output: `wait_for(..., after=mark)` looks only at later lines."""
        with self._changed:
            return len(self.lines)

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = 60.0) -> re.Match:
        return self.wait_line(pattern, after=after, timeout=timeout)[0]

    def wait_line(self, pattern: str, *, after: int = 0,
                  timeout: float = 60.0) -> tuple[re.Match, int]:
        """The first line from `after` on matching `pattern`, and the position past it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            index = after
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    index += 1
                    if match:
                        return match, index
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"no line matching {pattern!r} from {self.name}:\n"
                                         + "\n".join(self.lines[-60:]))
                self._changed.wait(min(left, 0.5))

    def matches(self, pattern: str, *, after: int = 0) -> list[re.Match]:
        regex = re.compile(pattern)
        with self._changed:
            return [m for m in map(regex.search, self.lines[after:]) if m]

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        self.send(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        if code != 0:  # shown with the failing test's output
            print(f"{self.name} exited with {code}; its last lines:\n" + "\n".join(self.lines[-80:]))
        return code

    def kill(self, timeout: float = 60.0) -> None:
        """Teardown: SIGTERM, and SIGKILL if that did not end it in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


class Up(ProcessLines):
    """A running `dynomesh up` on free ports, with its own home (and dynos under it).

    With `addons_postgres` it starts its own PostgreSQL for add-ons (on a free port); else
    none, which saves the tests that do not use add-ons an initdb and a server."""

    def __init__(self, home: Path, *extra: str, addons_postgres: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.home = home
        self.ports = {name: free_port()
                      for name in ("api", "http", "https", "router", "dynomgr", "pg")}
        self.api = f"http://127.0.0.1:{self.ports['api']}"
        self.http_port = self.ports["http"]
        self.https_port = self.ports["https"]  # the router's TLS listener (`up --https`)
        self.router_admin = f"http://127.0.0.1:{self.ports['router']}"
        self.dynomgr_admin = f"http://127.0.0.1:{self.ports['dynomgr']}"
        argv = dynomesh_argv(
            "up", "--home", str(home), "--api", f"127.0.0.1:{self.ports['api']}",
            "--http", f"127.0.0.1:{self.http_port}", "--https", f"127.0.0.1:{self.https_port}",
            "--router-admin", f"127.0.0.1:{self.ports['router']}",
            "--dynomgr-admin", f"127.0.0.1:{self.ports['dynomgr']}",
            "--data-dir", str(home / "dynos"), "--stop-timeout", "20",
            *(["--addons-postgres-port", str(self.ports["pg"])] if addons_postgres
              else ["--no-addons-postgres"]), *extra)
        environ = dynomesh_env(NO_COLOR="1", **(env or {}))
        environ.pop("DYNOMESH_ADDONS_DATABASE_URL", None)
        super().__init__(argv, environ, name="dynomesh up")

    def pids(self) -> dict[str, int]:
        """The latest pid of each part, from `up`'s own lines."""
        found = {}
        for match in self.matches(r"up +\| started (\w+) (?:again )?\(pid (\d+)\)"):
            found[match.group(1)] = int(match.group(2))
        return found

    def wait_ready(self) -> None:
        self.wait_for(r"up +\| dynomesh is up:")


# --- the CLI and the API --------------------------------------------------------------------

class CliError(AssertionError):
    pass


class Cli:
    """The `dynomesh` user commands, with one home's credentials."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.env = dynomesh_env(DYNOMESH_HOME=str(home), NO_COLOR="1", **env)

    def run(self, *args: str, cwd: Path | None = None,
            timeout: float = 120.0) -> subprocess.CompletedProcess:
        return subprocess.run(dynomesh_argv(*args), env=self.env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)

    def ok(self, *args: str, cwd: Path | None = None) -> str:
        """Run a command that must succeed; its stdout."""
        done = self.run(*args, cwd=cwd)
        if done.returncode != 0:
            raise CliError(f"`dynomesh {' '.join(args)}` exited {done.returncode}:\n"
                           f"{done.stdout}\n{done.stderr}")
        return done.stdout

    def json(self, *args: str) -> object:
        return json.loads(self.ok(*args, "--json"))


class Api:
    """GETs on the control plane's API with the CLI's token (credentials.json in the home)."""

    def __init__(self, home: Path, url: str | None = None) -> None:
        credentials = json.loads((home / "credentials.json").read_text())
        self.url = url or credentials["api"]
        self.token = credentials["token"]

    def get(self, path: str, timeout: float = 10.0):
        request = urllib.request.Request(self.url + path,
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def dynos(self, app: str) -> list[dict]:
        return self.get(f"/apps/{app}/dynos")

    def try_dynos(self, app: str) -> list[dict] | None:
        """The app's dynos, or None while the control plane does not answer."""
        try:
            return self.dynos(app)
        except (OSError, urllib.error.URLError):
            return None  # not listening (restarting): the caller polls again


def web_up(dynos: list[dict], count: int, release: int | None = None) -> bool:
    """Exactly `count` web dynos serving and up (on `release`), none being taken out."""
    web = [d for d in dynos if d["type"] == "web"]
    return (len(web) == count
            and all(d["state"] == "up" and d["serving"] and d["taking_out"] is None
                    and (release is None or d["release"]["version"] == release) for d in web))


# --- requests through the router ------------------------------------------------------------

@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def h_code(body: bytes) -> str:
    """The H-code of a page the router answered itself (`<code>H14</code>`), else ''."""
    match = re.search(rb"<code>(H\d\d)</code>", body)
    return match.group(1).decode() if match else ""


class RouterClient:
    """Requests to the router with a `Host` header, one connection per request."""

    def __init__(self, port: int, base_domain: str = "localhost",
                 address: str = "127.0.0.1") -> None:
        self.port = port
        self.base_domain = base_domain
        self.address = address  # where the router listens (another host's, on a test network)

    def host(self, app: str) -> str:
        return f"{app}.{self.base_domain}:{self.port}"

    def get(self, app: str, path: str = "/", timeout: float = 90.0) -> Response:
        return self.get_host(self.host(app), path, timeout)

    def get_host(self, host: str, path: str = "/", timeout: float = 90.0) -> Response:
        connection = http.client.HTTPConnection(self.address, self.port, timeout=timeout)
        try:
            connection.request("GET", path, headers={"Host": host})
            response = connection.getresponse()
            body = response.read()
            return Response(response.status, body, {k.lower(): v for k, v in response.getheaders()})
        finally:
            connection.close()

    def answers(self, app: str, predicate: Callable[[Response], bool]) -> Response | None:
        """A response that satisfies `predicate`, or None (for `poll`)."""
        return self.answers_host(self.host(app), predicate)

    def answers_host(self, host: str, predicate: Callable[[Response], bool]) -> Response | None:
        try:
            response = self.get_host(host, timeout=10)
        except OSError:
            return None  # the router is restarting: asked again
        return response if predicate(response) else None


@dataclass
class LoadResult:
    outcomes: Counter = field(default_factory=Counter)  # "200" / "503 H14" / "error: ..."
    bodies: Counter = field(default_factory=Counter)  # first line of each 200's body
    slowest: float = 0.0
    requests: int = 0

    @property
    def failures(self) -> int:
        return self.requests - self.outcomes["200"]


class LoadLoop:
    """`clients` threads each sending requests one after another on a keep-alive connection
    (reconnecting after an error) until stopped, or `max_requests` in all, or `max_seconds`:
    every load loop is bounded."""

    def __init__(self, router: RouterClient, app: str, *, clients: int = 1,
                 max_requests: int = 20000, max_seconds: float = 90.0) -> None:
        self.router = router
        self.app = app
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._max_requests = max_requests
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self._seen = threading.Condition(self._lock)

    def __enter__(self) -> LoadLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)
        return self.result

    def _more(self) -> bool:
        with self._lock:
            return (not self._stop.is_set() and self.result.requests < self._max_requests
                    and time.monotonic() < self._deadline)

    def _run(self) -> None:
        connection = None
        while self._more():
            started = time.monotonic()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(self.router.address,
                                                            self.router.port, timeout=90)
                connection.request("GET", "/", headers={"Host": self.router.host(self.app)})
                response = connection.getresponse()
                body = response.read()
                outcome = str(response.status) if response.status == 200 else \
                    f"{response.status} {h_code(body)}".strip()
                first = body.split(b"\n", 1)[0].decode("utf-8", "replace")
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                outcome, first = f"error: {type(error).__name__}: {error}", ""
                if connection is not None:
                    connection.close()
                connection = None
            elapsed = time.monotonic() - started
            with self._seen:
                result = self.result
                result.requests += 1
                result.outcomes[outcome] += 1
                if outcome == "200":
                    result.bodies[first] += 1
                result.slowest = max(result.slowest, elapsed)
                self._seen.notify_all()
        if connection is not None:
            connection.close()

    def wait_for_body(self, predicate: Callable[[str], bool], count: int = 1,
                      timeout: float = 60.0) -> None:
        """Wait until `count` responses' bodies satisfied `predicate`."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while sum(n for body, n in self.result.bodies.items() if predicate(body)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the load loop saw no such body in {timeout:g} s: "
                                         f"{dict(self.result.outcomes)} {dict(self.result.bodies)}")
                self._seen.wait(min(left, 0.5))


# --- apps to deploy -------------------------------------------------------------------------

def copy_example(name: str, into: Path) -> Path:
    """A copy of examples/NAME to deploy (deploy links the directory it packs: keep the
    checkout clean)."""
    target = into / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns(".dynomesh"))
    return target


def hello_variant(into: Path, tag: str) -> Path:
    """examples/hello whose answers start with `tag` (another version of the code)."""
    app = copy_example("hello", into / f"hello-{tag}")
    web = app / "web.py"
    source = web.read_text()
    marked = source.replace('f"{GREETING} from {DYNO}\\n"', f'f"{tag}: {{GREETING}} from {{DYNO}}\\n"')
    assert marked != source, "examples/hello/web.py no longer builds its answer as expected"
    web.write_text(marked)
    return app


def write_app(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def env_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0")
                if "=" in item)


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    for child in children(pid):
        kill_tree(child, sig)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already gone
