"""Factories for the dyno manager's functional tests: slugs of small test apps, a real
`dynomesh dynomgr` process whose output the test can wait on, and a view of the real processes
its dynos run as (read from /proc, independent of what the agent says).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from dynomesh.poll import POLL
from dynomgr.markers import cgroup2_mount, own_cgroup
from tests.conftest import dynomesh_argv, dynomesh_env, free_port

APPS = Path(__file__).parent / "apps"
# The dynos run as other users: use an interpreter every user can run.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
TEST_RUN_KEY = "DYNOMGR_TEST_RUN"
# Shortened timeouts for tests; a test that needs another value passes it.
FAST_FLAGS = {
    "--boot-timeout": "20",
    "--stop-timeout": "2",
    "--memory-interval": "0.2",
    "--restart-base": "0.2",
    "--restart-cap": "1",
    "--restart-jitter": "0",
}

UP = r"heroku\[{dyno}\]: State changed from starting to up \((127\.0\.0\.1:\d+)\)"


def shared_tmpdir(prefix: str) -> Path:
    """A directory in /tmp that dyno users can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


class SlugFactory:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._count = 0

    def make(self, procfile: str | None, extra: dict[str, bytes] | None = None) -> dict:
        """A slug with every test app and this Procfile; returns its {"url", "sha256"}."""
        self._count += 1
        path = self.directory / f"slug-{self._count}.tgz"
        with tarfile.open(path, "w:gz") as archive:
            for app in sorted(APPS.glob("*.py")):
                archive.add(app, arcname=app.name)
            files = dict(extra or {})
            if procfile is not None:
                files["Procfile"] = procfile.replace("python", PYTHON).encode()
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))
        return {"url": f"file://{path}", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    def raw(self, data: bytes) -> dict:
        """A 'slug' of arbitrary bytes (a corrupt one), with its true SHA-256."""
        self._count += 1
        path = self.directory / f"raw-{self._count}.tgz"
        path.write_bytes(data)
        return {"url": f"file://{path}", "sha256": hashlib.sha256(data).hexdigest()}


class AgentRun:
    """A running `dynomesh dynomgr`. Collects stdout and stderr lines; tests wait on them."""

    def __init__(self, argv: list[str], env: dict[str, str], admin_port: int, read_stdout: bool = True) -> None:
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True)]
        self._readers[0].start()
        if read_stdout:
            self.start_reading_stdout()

    def start_reading_stdout(self) -> None:
        reader = threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True)
        reader.start()
        self._readers.append(reader)

    def _read(self, stream, lines: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            with self._changed:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def mark(self) -> int:
        """Position in stdout: `wait_for(..., after=mark)` looks only at later lines."""
        with self._changed:
            return len(self.out)

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = 30.0, stream: str = "out") -> re.Match:
        """The first line (from `after` on) matching `pattern`; fails after `timeout`."""
        return self.wait_line(pattern, after=after, timeout=timeout, stream=stream)[0]

    def wait_line(self, pattern: str, *, after: int = 0, timeout: float = 30.0, stream: str = "out") -> tuple[re.Match, int]:
        """Like `wait_for`, plus the position just past the matching line."""
        regex = re.compile(pattern)
        lines = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        with self._changed:
            index = after
            while True:
                while index < len(lines):
                    match = regex.search(lines[index])
                    index += 1
                    if match:
                        return match, index
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and all(not t.is_alive() for t in self._readers)):
                    tail = "\n".join(lines[-40:])
                    errors = "\n".join(self.err[-20:])
                    raise AssertionError(f"no line matching {pattern!r} in {stream}:\n{tail}\n--- stderr:\n{errors}")
                self._changed.wait(min(left, 0.5))

    def count(self, pattern: str, *, after: int = 0) -> int:
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.out[after:] if regex.search(line))

    def wait_up(self, dyno: str, *, after: int = 0, app: str = "hello", timeout: float = 30.0) -> str:
        """Wait for `dyno` to report up; returns its address."""
        return self.wait_for(f"{app} " + UP.format(dyno=re.escape(dyno)), after=after, timeout=timeout).group(1)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.admin + path, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def dynos(self) -> dict[str, dict]:
        status, body = self.get("/dynos")
        assert status == 200
        return {f"{d['app']} {d['name']}": d for d in json.loads(body)["dynos"]}

    def metric(self, name: str, **labels: str) -> float:
        _, body = self.get("/metrics")
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
        for line in body.decode().splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0

    def wait_until(self, condition, *, timeout: float = 30.0, what: str = "condition"):
        """Poll `condition()` (an admin query) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        pauses = POLL.start()
        while True:
            try:
                result = condition()
            except OSError:  # the admin endpoint is not listening yet
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(pauses.next_delay())  # another process's state: polled, bounded


def http_json(address: str, path: str = "/") -> dict:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
        return json.loads(response.read())


def marked_processes(run_id: str) -> dict[str, list[tuple[int, int]]]:
    """Live processes whose environment carries this test run's id: DYNO -> [(pid, sid)]."""
    found: dict[str, list[tuple[int, int]]] = {}
    needle = f"{TEST_RUN_KEY}={run_id}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = stat.rpartition(b")")[2].split()
        if fields[0] in (b"Z", b"X") or needle not in environ:
            continue
        dyno = next((e[5:].decode() for e in environ if e.startswith(b"DYNO=")), "?")
        found.setdefault(dyno, []).append((int(name), int(fields[3])))
    return found


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


class AgentHarness:
    """Per-test: slugs, a data dir, assignments, and the agents started (cleaned up after)."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.root = shared_tmpdir("dynomgr-test-")
        self.data_dir = self.root / "data"
        self.assignments = self.root / "assignments.json"
        self.slugs = SlugFactory(self.root)
        self.runs: list[AgentRun] = []

    def dyno(self, name: str, slug: dict, *, app: str = "hello", release: int = 1, env: dict | None = None, **fields) -> dict:
        entry = {
            "kind": "formation",
            "name": name,
            "app": app,
            "type": name.split(".")[0],
            "release": release,
            "slug": slug,
            "env": {TEST_RUN_KEY: self.run_id, **(env or {})},
            "memory_mb": 512,
            "health_check": None,
        }
        entry.update(fields)
        return entry

    def write(self, *entries: dict) -> None:
        partial = self.assignments.with_suffix(".tmp")
        partial.write_text(json.dumps({"dynos": list(entries)}, indent=1))
        os.replace(partial, self.assignments)

    def start(self, *extra: str, flags: dict[str, str] | None = None, prefix: list[str] | None = None,
              read_stdout: bool = True, env: dict[str, str] | None = None, cycling: bool = False,
              source: list[str] | None = None) -> AgentRun:
        """`source`: the assignment source's flags, instead of `--assignments <file>`."""
        admin_port = free_port()
        options = {**FAST_FLAGS, **({} if cycling else {"--no-cycling": None}), **(flags or {})}
        argv = dynomesh_argv(
            "dynomgr", *(source or ["--assignments", str(self.assignments)]),
            "--data-dir", str(self.data_dir), "--admin", f"127.0.0.1:{admin_port}",
        )  # fmt: skip
        for flag, value in options.items():
            argv += [flag] if value is None else [flag, value]
        run = AgentRun((prefix or []) + argv + list(extra), dynomesh_env(**(env or {})), admin_port, read_stdout)
        self.runs.append(run)
        return run

    def cleanup(self) -> None:
        for run in self.runs:
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGTERM)
                try:
                    run.proc.wait(20)
                except subprocess.TimeoutExpired:
                    run.proc.kill()
                    run.proc.wait()
        # Safety net: nothing a test started may outlive it, not even an empty cgroup of an
        # agent the test killed.
        for pids in marked_processes(self.run_id).values():
            for pid, _ in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        while marked_processes(self.run_id) and time.monotonic() < deadline:
            time.sleep(0.01)  # SIGKILLed processes take a moment to leave their cgroup
        self._remove_cgroups()
        shutil.rmtree(self.root, ignore_errors=True)

    def _remove_cgroups(self) -> None:
        mount, mine = cgroup2_mount(), own_cgroup()
        id_file = self.data_dir / "agent-id"
        if mount is None or mine is None or not id_file.exists():
            return
        base = mount / mine.lstrip("/") / f"dynomesh-{id_file.read_text().strip()}"
        if base.is_dir():
            for child in base.iterdir():
                if child.is_dir():
                    child.rmdir()
            base.rmdir()


@pytest.fixture
def harness():
    h = AgentHarness()
    yield h
    h.cleanup()
