"""What an agent leaves for its successor when it exits keeping its dynos (`--keep-dynos`).

Each running dyno already has a record in `run/<instance>-<life>.json` (pid, start time,
marker), written at launch so that a successor can stop what a crashed agent left. An agent that
hands its dynos over rewrites each record with `"kept": {...}`: everything the next agent needs
to go on watching that dyno as if it had started it, under the same identity:

    instance, life     the dyno's instance id and life number (its marker and file names)
    pid, start_ticks   the first process, and its start time from /proc/PID/stat: with the
                       pid, this names one process even after the pid is reused
    marker, cgroup     the dyno's marker value and cgroup (dynomgr/markers.py)
    port, address      its $PORT and the address routers know it by
    state, since       `up` or `starting`, as last reported, and when
    restarts           crash restarts so far (reported by `ps`)
    crashes            crashes in a row so far: the restart back-off goes on from there
                       (0 when absent, as in records of the first version)
    unhealthy          why its health check last took it out of the routers' tables, or
                       null (absent in older records: healthy)
    launched_at        Unix time the process started (daily cycling counts from it)
    directory          its $HOME
    outputs            its stdout and stderr FIFOs (dynomgr/outputfifo.py), each as
                       {"path", "tail"}: tail is the hex of the start of a line read but not
                       yet ended (no line is cut). A record of the first hand-over version has
                       one FIFO for both instead, as "output" and "tail"; it is still read.
    assignment         the assignment it runs (docs/assignments-format.md shape)

Records without `kept` are a crashed agent's: their processes are stopped, as before. The
adopting agent rewrites the record at once as a plain launch record, so that if it crashes in
turn, the agent after it stops the dyno (design.md) instead of adopting it from a stale record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynomgr.assignments import Assignment, AssignmentsError, dump_assignment, parse_entry
from dynomgr.state import DynoState

KEPT = "kept"
# A dyno is handed over only in these states: its process runs and routers may know it.
KEEPABLE = (DynoState.STARTING, DynoState.UP)


class HandoverError(ValueError):
    """A kept record that cannot be adopted; its processes are stopped instead."""


@dataclass(frozen=True)
class KeptDyno:
    assignment: Assignment
    instance: str
    life: int
    pid: int
    start_ticks: int
    marker: str
    cgroup: Path | None
    port: int | None
    address: str | None
    state: DynoState
    since: float
    restarts: int
    launched_at: float
    directory: Path
    outputs: tuple[tuple[Path, bytes], ...]  # (FIFO, unfinished line) for stdout, stderr
    crashes: int = 0
    unhealthy: str | None = None  # as last reported: the next agent's health check goes on

    @property
    def record_id(self) -> str:
        return f"{self.instance}-{self.life}"

    def to_record(self) -> dict[str, Any]:
        # pid, start_ticks and marker also at the top level, where a launch record has them:
        # an agent that cannot adopt this record (or an older one) still finds what to stop.
        return {
            "app": self.assignment.app, "dyno": self.assignment.name, "pid": self.pid,
            "start_ticks": self.start_ticks, "marker": self.marker,
            KEPT: {
                "instance": self.instance, "life": self.life, "pid": self.pid,
                "start_ticks": self.start_ticks, "marker": self.marker,
                "cgroup": str(self.cgroup) if self.cgroup is not None else None,
                "port": self.port, "address": self.address, "state": self.state.value,
                "since": self.since, "restarts": self.restarts, "crashes": self.crashes,
                "unhealthy": self.unhealthy, "launched_at": self.launched_at, "directory": str(self.directory),
                "outputs": [{"path": str(path), "tail": tail.hex()} for path, tail in self.outputs],
                "assignment": dump_assignment(self.assignment),
            },
        }  # fmt: skip


def is_kept(record: dict[str, Any]) -> bool:
    return isinstance(record.get(KEPT), dict)


def parse_kept(record: dict[str, Any], schemes: frozenset[str]) -> KeptDyno:
    """The kept dyno of a record; raises `HandoverError` naming what is wrong."""
    raw = record.get(KEPT)
    if not isinstance(raw, dict):
        raise HandoverError("no kept dyno in this record")
    try:
        assignment = parse_entry(raw["assignment"], schemes)
        state = DynoState(raw["state"])
        if state not in KEEPABLE:
            raise HandoverError(f"a dyno in state {state} is not handed over")
        kept = KeptDyno(
            assignment=assignment, instance=_text(raw["instance"]), life=_int(raw["life"]),
            pid=_int(raw["pid"]), start_ticks=_int(raw["start_ticks"]),
            marker=_text(raw["marker"]),
            cgroup=Path(raw["cgroup"]) if raw["cgroup"] is not None else None,
            port=_int(raw["port"]) if raw["port"] is not None else None,
            address=raw["address"] if raw["address"] is None else _text(raw["address"]),
            state=state, since=float(raw["since"]), restarts=_int(raw["restarts"]),
            launched_at=float(raw["launched_at"]), directory=Path(_text(raw["directory"])),
            outputs=_outputs(raw), crashes=_int(raw.get("crashes", 0)),
            unhealthy=raw.get("unhealthy") if isinstance(raw.get("unhealthy"), str) else None,
        )  # fmt: skip
    except HandoverError:
        raise
    except KeyError as exc:
        raise HandoverError(f"the kept record lacks {exc.args[0]!r}") from None
    except (AssignmentsError, TypeError, ValueError) as exc:
        raise HandoverError(f"the kept record is malformed: {exc}") from None
    if kept.pid <= 1:
        raise HandoverError(f"the kept record names pid {kept.pid}")
    return kept


def _outputs(raw: dict[str, Any]) -> tuple[tuple[Path, bytes], ...]:
    if "outputs" not in raw:  # the first version: stdout and stderr shared one FIFO
        return ((Path(_text(raw["output"])), bytes.fromhex(raw["tail"])),)
    outputs = raw["outputs"]
    if not isinstance(outputs, list) or not outputs:
        raise TypeError(f"expected a list of output FIFOs, got {outputs!r}")
    return tuple((Path(_text(o["path"])), bytes.fromhex(o["tail"])) for o in outputs)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, got {value!r}")
    return value
