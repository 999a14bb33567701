"""A real `dynomesh control` process for tests: started on a free port, ready when it says so.

    control = ControlPlane(home).start()     # waits for the ready line, never for time
    control.cli("apps:create", "hello")      # the real `dynomesh` command against it
    control.kill()                           # SIGKILL, for durability tests

End-to-end tests can use it too.
"""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import dynomesh_argv, dynomesh_env

READY = re.compile(r"^dynomesh control: listening on (?P<url>http://\S+)")
START_TIMEOUT = 60  # generous: two shared cores under a parallel test load


class ControlPlane:
    def __init__(self, home: Path, *, database_url: str | None = None,
                 extra_args: tuple[str, ...] = (), environ: dict[str, str] | None = None
                 ) -> None:
        self.home = Path(home)
        self.environ = environ or {}  # more for the control process's environment
        self.database_url = database_url
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self.log_path = self.home.parent / f"{self.home.name}-control.log"
        self.output: list[str] = []  # stdout after the ready line: app log lines
        self._reader: threading.Thread | None = None

    def start(self) -> "ControlPlane":
        argv = ["control", "--listen", "127.0.0.1:0", "--home", str(self.home),
                *self.extra_args]
        if "--builds-dir" not in self.extra_args:
            # In the test's own directory, never /var/lib/dynomesh/builds (where a root control
            # plane builds when others cannot enter its home, as pytest's tmp_path).
            argv += ["--builds-dir", str(self.home / "builds")]
        if self.database_url:
            argv += ["--database-url", self.database_url]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(dynomesh_argv(*argv), env=dynomesh_env(**self.environ),
                                        stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        self.url = self._await_ready()
        # Keep reading stdout so the control plane never blocks on a full pipe.
        self._reader = threading.Thread(target=self._drain, args=(self.process.stdout,),
                                        daemon=True)
        self._reader.start()
        return self

    def _drain(self, stdout) -> None:
        for line in stdout:
            self.output.append(line.rstrip("\n"))

    def _await_ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        stdout = self.process.stdout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                break
            line = stdout.readline()
            if not line:  # the process exited before it was ready
                self.process.wait(timeout=10)
                raise RuntimeError(f"dynomesh control exited ({self.process.returncode}) "
                                   f"before it was ready:\n{self.log()}")
            match = READY.match(line)
            if match:
                return match["url"]
        self.kill()
        raise RuntimeError(f"dynomesh control was not ready in {START_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def token(self) -> str:
        return json.loads((self.home / "credentials.json").read_text())["token"]

    def env(self, **extra: str) -> dict[str, str]:
        env = dynomesh_env(**{"DYNOMESH_HOME": str(self.home), **extra})
        for name in ("DYNOMESH_API", "DYNOMESH_TOKEN", "DYNOMESH_APP"):
            if name not in extra:
                env.pop(name, None)
        return env

    def cli(self, *args: str, cwd: Path | None = None, timeout: float = 60,
            **env: str) -> subprocess.CompletedProcess:
        """Run the real `dynomesh` command with this control plane's home."""
        return subprocess.run(dynomesh_argv(*args), env=self.env(**env), cwd=cwd,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self._reap()

    def _reap(self) -> int:
        if self.process is None:
            return 0
        code = self.process.wait(timeout=30)
        if self._reader is not None:
            self._reader.join(timeout=10)  # ends at EOF, now that the process is gone
            self._reader = None
        if self.process.stdout:
            self.process.stdout.close()
        return code
