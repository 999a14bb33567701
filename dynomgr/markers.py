"""Finding every process of a dyno, including those that left its process group.

A dyno starts in a session and process group of its own, and stopping it signals that group. A
process that calls `setsid()` leaves the group, so each dyno also carries a marker that its
descendants cannot shed:

* **cgroup** (cgroup v2, where the agent may create cgroups): the dyno's first process joins
  `<agent's cgroup>/dynomesh-<agent id>/<instance>` before it execs, and so does every process it
  ever forks. Unprivileged processes cannot move out. `cgroup.kill` ends them all at once.
* **environ** (elsewhere): `DYNOMESH_MARKER=<agent id>.<instance>` in the dyno's environment,
  found in /proc/PID/environ. Inherited by every descendant that keeps its environment, which is
  nearly all of them; a process that execs with an empty environment and calls setsid() escapes.

The marker carries the agent id stored in the data dir, so an agent restarted after a crash finds
what its predecessor left, and two agents on one machine never touch each other's dynos.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import os
import signal
from pathlib import Path

from dynomesh.poll import poll_until
from dynomgr import procscan

ENV_KEY = "DYNOMESH_MARKER"


class MarkerMode(enum.Enum):
    AUTO = "auto"
    CGROUP = "cgroup"
    ENVIRON = "environ"


class MarkerError(Exception):
    pass


class DynoMarker:
    """One dyno instance's marker: what the child sets up, and how to find its processes."""

    def __init__(self, value: str, cgroup: Path | None) -> None:
        self.value = value  # "<agent id>.<instance>"
        self.cgroup = cgroup
        # Environ mode: processes seen with the marker (pid -> start ticks). A dying process
        # loses its environment before it is gone; it still counts until it is.
        self.seen: dict[int, int] = {}

    @property
    def env(self) -> dict[str, str]:
        """Extra environment for the dyno: only in environ mode (the dyno's env is otherwise
        exactly its config vars and the platform's variables)."""
        return {} if self.cgroup is not None else {ENV_KEY: self.value}

    def child_setup(self) -> None:
        """Runs in the forked child before exec (and before it drops root): join the cgroup."""
        if self.cgroup is not None:
            fd = os.open(self.cgroup / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)


class Markers:
    """The marker strategy of this agent: creates markers, finds and ends marked processes."""

    def __init__(self, agent_id: str, cgroup_base: Path | None) -> None:
        self.agent_id = agent_id
        self.cgroup_base = cgroup_base
        self._scan: asyncio.Future[dict[str, set[int]]] | None = None

    @property
    def mode(self) -> MarkerMode:
        return MarkerMode.CGROUP if self.cgroup_base is not None else MarkerMode.ENVIRON

    def describe(self) -> str:
        if self.cgroup_base is not None:
            return f"cgroup v2 under {self.cgroup_base}"
        return f"environment marker {ENV_KEY} in /proc/PID/environ"

    def create(self, instance: str) -> DynoMarker:
        cgroup = None
        if self.cgroup_base is not None:
            cgroup = self.cgroup_base / instance
            try:
                cgroup.mkdir(exist_ok=True)
            except OSError as exc:
                raise MarkerError(f"cannot create cgroup {cgroup}: {exc.strerror}") from exc
        return DynoMarker(f"{self.agent_id}.{instance}", cgroup)

    def adopt(self, value: str, cgroup: Path | None) -> DynoMarker:
        """The marker of a dyno a previous agent on this data dir started (same agent id)."""
        return DynoMarker(value, cgroup)

    async def members(self, marker: DynoMarker) -> set[int]:
        """Live processes carrying this marker (zombies excluded)."""
        if marker.cgroup is not None:
            return _cgroup_procs(marker.cgroup)
        found = dict((await self._environ_scan()).get(marker.value, {}))
        for pid, ticks in marker.seen.items():
            if pid not in found and procscan.is_alive(pid, ticks):
                found[pid] = ticks
        marker.seen = found
        return set(found)

    async def signal(self, marker: DynoMarker, sig: int, *, except_group: int | None = None) -> int:
        """Send `sig` to every marked process, except members of process group `except_group`
        (already signalled through their group, and a handler should run once); returns how
        many processes were signalled."""
        if marker.cgroup is not None and sig == signal.SIGKILL:
            pids = _cgroup_procs(marker.cgroup)
            if pids:
                _write(marker.cgroup / "cgroup.kill", "1")
            return len(pids)
        sent = 0
        for pid in await self.members(marker):
            if except_group is not None:
                stat = procscan.read_stat(pid)
                if stat is None or stat.pgid == except_group:
                    continue
            _kill(pid, sig)
            sent += 1
        return sent

    async def release(self, marker: DynoMarker) -> None:
        """Forget the marker once its processes are gone (removes the empty cgroup)."""
        if marker.cgroup is not None:
            await _remove_cgroup(marker.cgroup)

    async def leftovers(self) -> dict[str, set[int]]:
        """Marked processes of this agent id that no dyno of this run created, by instance."""
        found: dict[str, set[int]] = {}
        if self.cgroup_base is not None:
            for child in self.cgroup_base.iterdir():
                if child.is_dir():
                    found[child.name] = _cgroup_procs(child)
        prefix = f"{self.agent_id}."
        for value, pids in (await self._environ_scan()).items():
            if value.startswith(prefix):
                found.setdefault(value[len(prefix) :], set()).update(pids)
        return found

    async def close(self) -> None:
        """The agent exits with no dynos left: remove its (empty) cgroup."""
        if self.cgroup_base is not None:
            await _remove_cgroup(self.cgroup_base)

    async def release_leftover(self, instance: str) -> None:
        if self.cgroup_base is not None:
            await self.release(DynoMarker(f"{self.agent_id}.{instance}", self.cgroup_base / instance))

    async def _environ_scan(self) -> dict[str, dict[int, int]]:
        """Marker value -> pids over all processes. Concurrent callers share one scan (a drain
        of 500 dynos must not read all of /proc 500 times)."""
        if self._scan is None:
            loop = asyncio.get_running_loop()
            self._scan = loop.run_in_executor(None, _scan_environ)

            def _done(_: object) -> None:
                self._scan = None

            self._scan.add_done_callback(_done)
        return await asyncio.shield(self._scan)


def _scan_environ() -> dict[str, dict[int, int]]:
    """Marker value -> {pid: start ticks} of live processes carrying it."""
    found: dict[str, dict[int, int]] = {}
    key = ENV_KEY.encode()
    me = os.getpid()
    for pid in procscan.all_pids():
        if pid == me:
            continue
        value = procscan.environ_value(pid, key)
        if value is None:
            continue
        stat = procscan.read_stat(pid)
        if stat is not None and not stat.zombie:
            found.setdefault(value.decode(errors="replace"), {})[pid] = stat.start_ticks
    return found


# A process leaves cgroup.procs when its last thread starts exiting, but the cgroup stays
# populated (rmdir fails with EBUSY) until the kernel has torn the process down, which for a
# process holding gigabytes takes a while, longer on a busy machine.
_CGROUP_EMPTYING = 10.0


async def _remove_cgroup(cgroup: Path) -> None:
    """rmdir the cgroup, waiting up to _CGROUP_EMPTYING seconds for its last process to leave."""
    def removed() -> bool:
        try:
            cgroup.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise MarkerError(f"cannot remove cgroup {cgroup}: {exc.strerror}") from exc
            return False  # still populated: the kernel is tearing its last process down
        return True

    if not await poll_until(removed, _CGROUP_EMPTYING):
        raise MarkerError(f"cannot remove cgroup {cgroup}: {os.strerror(errno.EBUSY)} "
                          f"after {_CGROUP_EMPTYING:g} s")


def _cgroup_procs(cgroup: Path) -> set[int]:
    try:
        text = (cgroup / "cgroup.procs").read_text()
    except FileNotFoundError:
        return set()
    return {int(line) for line in text.split()}


def _write(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already gone: exactly what we wanted


def cgroup2_mount() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrids)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        # "... - cgroup2 cgroup2 rw,..." : the filesystem type follows the " - " separator.
        pre, sep, post = line.partition(" - ")
        if sep and post.split(" ", 1)[0] == "cgroup2":
            return Path(pre.split()[4])
    return None


def own_cgroup() -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        return None
    return None


def setup_markers(agent_id: str, mode: MarkerMode) -> tuple[Markers, str | None]:
    """The agent's marker strategy, and why cgroups are not used when they are not."""
    if mode is MarkerMode.ENVIRON:
        return Markers(agent_id, None), None
    reason = None
    mount, mine = cgroup2_mount(), own_cgroup()
    if mount is None or mine is None:
        reason = "no cgroup v2 hierarchy is mounted"
    else:
        here = mount / mine.lstrip("/")
        base = here / f"dynomesh-{agent_id}"
        try:
            base.mkdir(exist_ok=True)
            # A dyno's first process moves from our cgroup into its own: both must be writable.
            if not os.access(here / "cgroup.procs", os.W_OK):
                raise PermissionError(f"{here}/cgroup.procs is not writable")
            return Markers(agent_id, base), None
        except OSError as exc:
            reason = f"cannot create cgroups under {here}: {exc.strerror or exc}"
    if mode is MarkerMode.CGROUP:
        raise MarkerError(f"--marker cgroup: {reason}")
    return Markers(agent_id, None), reason
