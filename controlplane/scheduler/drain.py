"""Draining a VM: its dynos move elsewhere, each serving there before it stops here.

The pool cordons a VM it means to terminate (`draining`): placement skips it, and each pass
decides per dyno still on it (a pure function; the scheduler applies the steps):

- an up dyno (for a web dyno: serving and routable) gets a **twin**: the same app, process
  type, number, release and size, placed on another VM, marked `replaces` = the original.
  A web twin does not serve yet, so the route entry never lists two `web.1`s;
- once the twin is up, one **switch** step (one transaction) makes it serve and takes the
  original out of the routes; the original stops only after every router has that revision
  (the take-out's usual wait, scheduler/takeout.py), so requests meet the twin and never a
  stopping dyno. A worker's original is removed when its twin is up;
- a dyno that is not up (starting, crashed, a preboot dyno not serving yet) has nothing to
  hand over and is **moved** at once;
- a one-off dyno (`dynomesh run`, a release phase) is left to run to its end where it is:
  moving it would run its command twice. The VM still holds its memory, so the pool
  terminates the VM only once it ended (or its --timeout ended it);
- a twin whose original is gone or no longer on a cordoned VM is **dropped**; one whose
  release or size no longer matches its original's is dropped too (the next pass makes a
  new one).

The planner leaves twins alone while their original lives (scheduler/planner.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from controlplane.store.models import Dyno, ObservedState


@dataclass(frozen=True)
class MakeTwin:
    original: Dyno


@dataclass(frozen=True)
class Switch:
    original: Dyno
    twin: Dyno


@dataclass(frozen=True)
class Move:
    dyno: Dyno


@dataclass(frozen=True)
class DropTwin:
    twin: Dyno


DrainStep = Union[MakeTwin, Switch, Move, DropTwin]


def _is_up(dyno: Dyno) -> bool:
    return (dyno.vm_id is not None and dyno.state is ObservedState.UP and dyno.take_out is None
            and (not dyno.is_web or bool(dyno.address)))


def _hands_over(dyno: Dyno) -> bool:
    """Whether `dyno` does work a twin must take up before it stops."""
    if dyno.is_web:
        return dyno.routable
    return _is_up(dyno)


def plan_drain(draining: Iterable[Dyno], twins: Iterable[Dyno],
               cordoned: set[str]) -> list[DrainStep]:
    """Steps for the dynos on cordoned VMs (`draining`) given every existing twin."""
    originals = {d.id: d for d in draining}
    steps: list[DrainStep] = []
    twin_of: dict[str, Dyno] = {}
    for twin in twins:
        original = originals.get(twin.replaces or "")
        if (original is None or original.vm_id not in cordoned or twin.vm_id in cordoned
                or (twin.release, twin.size) != (original.release, original.size)
                or original.id in twin_of):
            steps.append(DropTwin(twin))
        else:
            twin_of[original.id] = twin
    for dyno in originals.values():
        if dyno.take_out is not None or dyno.replaces is not None:
            continue  # on its way out already; a twin on a cordoned VM is dropped above
        if dyno.one_off is not None:
            continue  # runs to its end here; its command must not run twice
        twin = twin_of.get(dyno.id)
        if twin is not None:
            if _is_up(twin) and _hands_over(dyno):
                steps.append(Switch(dyno, twin))
            elif not _hands_over(dyno):
                steps += [DropTwin(twin), Move(dyno)]
        elif _hands_over(dyno):
            steps.append(MakeTwin(dyno))
        else:
            steps.append(Move(dyno))
    return steps


def subject(step: DrainStep) -> Dyno:
    """The dyno a step is about (the original, or the twin dropped)."""
    match step:
        case MakeTwin() | Switch():
            return step.original
        case Move():
            return step.dyno
    return step.twin


def describe(steps: Iterable[DrainStep]) -> list[str]:
    lines = []
    for step in steps:
        match step:
            case MakeTwin():
                lines.append(f"twin {step.original.name} ({step.original.id}) elsewhere")
            case Switch():
                lines.append(f"switch {step.original.name} to its twin {step.twin.id}")
            case Move():
                lines.append(f"move {step.dyno.name} ({step.dyno.id})")
            case DropTwin():
                lines.append(f"drop twin {step.twin.id} of {step.twin.replaces}")
    return lines
