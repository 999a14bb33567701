"""The agent's data directory: its identity, its slug cache, its dynos' directories, and the
records of what it started, so that a successor can stop what a crashed agent left behind.

    <data-dir>/
      agent-id            random id of this VM's agent; part of every dyno marker
      agent.lock          flock()ed by the running agent: one agent per data dir
      slugs/<sha256>.tgz  verified slug cache (0700)
      run/<instance>.json one record per running dyno process (0700); `kept` in it when the
                          agent exited leaving the dyno running (dynomgr/handover.py)
      run/<instance>.out  the dyno's stdout FIFO (dynomgr/outputfifo.py)
      run/<instance>.err  the dyno's stderr FIFO
      dynos/<app>/<name>.<instance>/   a dyno's fresh directory ($HOME, cwd), 0700, owned by
                                       the dyno's user; the levels above are 0711 so that user
                                       can reach it but not list its neighbours
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any


# A dyno life's output FIFOs: stdout, stderr.
OUTPUT_SUFFIXES = (".out", ".err")


class DataDirError(Exception):
    """The data dir cannot be used; the message names the path and what to do."""


class DataDir:
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.slugs = self.root / "slugs"
        self.run = self.root / "run"
        self.dynos = self.root / "dynos"
        self._lock_fd: int | None = None

    def prepare(self, *, other_users_enter: bool) -> None:
        """Create the layout and check it is usable; raises `DataDirError` naming the problem."""
        try:
            # New: others may pass through (to their dyno's directory) but not list it.
            # Existing: left as its owner made it; _check_enterable() says if that won't do.
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(mode=0o711, exist_ok=True)
            if not self.root.is_dir():
                raise DataDirError(f"data dir {self.root} is not a directory")
            for private in (self.slugs, self.run):
                private.mkdir(mode=0o700, exist_ok=True)
            self.dynos.mkdir(mode=0o711, exist_ok=True)
            os.chmod(self.dynos, 0o711)
            probe = self.run / f".probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except DataDirError:
            raise
        except FileExistsError as exc:  # mkdir() met a file where a directory should be
            raise DataDirError(f"data dir {self.root} is unusable: {exc.filename} is not a directory") from exc
        except OSError as exc:
            where = exc.filename or self.root
            raise DataDirError(f"data dir {self.root} is unusable: {where}: {exc.strerror}") from exc
        if other_users_enter:
            self._check_enterable()

    def _check_enterable(self) -> None:
        # Dynos run as other users: every directory above their own must let others pass.
        for directory in [self.dynos, *self.dynos.parents]:
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                raise DataDirError(
                    f"data dir {self.root} is unusable: dyno users cannot enter {directory} "
                    f"(mode {stat.S_IMODE(mode):04o}); choose a data dir others may traverse, "
                    f"e.g. /var/lib/dynomesh"
                )

    def lock(self) -> None:
        """Hold the data dir for this process; a second agent on it is refused."""
        path = self.root / "agent.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirError(
                f"data dir {self.root} is in use by another dyno manager (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd  # held until the process exits, even by SIGKILL

    def agent_id(self) -> str:
        path = self.root / "agent-id"
        try:
            existing = path.read_text().strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            return existing
        new = secrets.token_hex(6)
        path.write_text(new + "\n")
        return new

    def dyno_dir(self, app: str, name: str, instance: str) -> Path:
        app_dir = self.dynos / app
        app_dir.mkdir(mode=0o711, exist_ok=True)
        return app_dir / f"{name}.{instance}"

    def clear_dyno_dirs(self, keep: frozenset[Path] = frozenset()) -> list[tuple[Path, str]]:
        """Remove every dyno directory but those of adopted dynos (at start, after leftovers
        are stopped); returns the paths that could not be removed, with why."""
        failures: list[tuple[Path, str]] = []
        # Matched by <app>/<name>.<instance>, not by full path: the previous agent may have
        # spelled the same data dir differently (a symlink, a relative path).
        kept = {(k.parent.name, k.name) for k in keep}

        def failed(function, path, exc_info) -> None:
            failures.append((Path(path), str(exc_info[1])))

        for app_dir in self.dynos.iterdir():
            if not any(app == app_dir.name for app, _ in kept):
                shutil.rmtree(app_dir, onerror=failed)
                continue
            for entry in app_dir.iterdir():
                if (app_dir.name, entry.name) not in kept:
                    shutil.rmtree(entry, onerror=failed)
        return failures

    def clear_outputs(self, keep: frozenset[str]) -> None:
        """Remove output FIFOs of dynos that are gone (`keep`: record ids still in use)."""
        for suffix in OUTPUT_SUFFIXES:
            for path in self.run.glob(f"*{suffix}"):
                if path.stem not in keep:
                    path.unlink(missing_ok=True)

    def output_fifos(self, instance: str) -> tuple[Path, Path]:
        """The life's stdout and stderr FIFOs."""
        out, err = (self.run / f"{instance}{suffix}" for suffix in OUTPUT_SUFFIXES)
        return out, err

    # Records of running dyno processes.

    def write_record(self, instance: str, record: dict[str, Any]) -> None:
        path = self.run / f"{instance}.json"
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(record))
        os.replace(partial, path)  # a crash leaves the old record or the new one, never half

    def remove_record(self, instance: str) -> None:
        """Forget a dyno life: its record and its output FIFO."""
        (self.run / f"{instance}.json").unlink(missing_ok=True)
        for path in self.output_fifos(instance):
            path.unlink(missing_ok=True)

    def records(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for path in self.run.glob("*.json"):
            try:
                found[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                found[path.stem] = {}  # unreadable: the marker scan still finds its processes
        return found
