"""The formation planner: from an app's formation, release and dynos to the steps that converge them.

Pure: it takes frozen values and returns a list of actions; the scheduler applies them in one
transaction. What it decides, per process type with quantity Q of release R at size S:

- Dynos are named `<type>.1` … `<type>.Q`; a missing number gets a new dyno.
- A dyno numbered above Q, or of another release or size, is retired. A worker of another
  release with the same size is updated in place instead (its dyno manager restarts it on the new
  release, as Heroku does).
- Retiring a dyno that routers may send requests to (a routable web dyno, or one already being
  taken out) takes it out of the route feed first; the scheduler stops it once routers have the
  change. Any other dyno is removed at once.
- A number whose old web dyno is still being taken out stays taken until that dyno is gone, so
  the replacement never runs beside it (without preboot, `web.1` runs once at a time).
- One-off dynos (`dynomesh run`, release phases) are no formation's: the planner leaves them
  alone (controlplane/store/oneoffs.py places and ends them).
- A drain twin (a dyno taking over from one on a draining VM, scheduler/drain.py) is left to
  the drain while its original lives; retiring the original retires its twin too.
- With the `preboot` feature, while serving web dynos run an older release or size, the new
  dynos start beside them without serving; once every one of them is up, one step makes them
  serve and takes the old ones out: the route entry switches in one revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Union

from controlplane.store.models import (AppSpec, Dyno, NewDyno, ObservedState, ProcessSpec,
                                       TakeOut)

# The planner's input (`AppSpec`, `ProcessSpec`) is what the store reads for a pass.
__all__ = ["AppSpec", "ProcessSpec", "Action", "Create", "Remove", "StartTakeOut", "Rerelease",
           "Serve", "plan_app", "describe", "retire"]


# --- actions ---

@dataclass(frozen=True)
class Create(NewDyno):
    """Start a new dyno, placed where `Placement` says."""


@dataclass(frozen=True)
class Remove:
    dyno: Dyno


@dataclass(frozen=True)
class StartTakeOut:
    """Leave the route feed now; stop (or restart) once routers have the change."""

    dyno: Dyno
    then: TakeOut


@dataclass(frozen=True)
class Rerelease:
    """Run a worker on another release in place (its assignment changes: a restart)."""

    dyno: Dyno
    release: int


@dataclass(frozen=True)
class Serve:
    """Let routes list these dynos; `switched_to` names the release of a preboot switch."""

    dynos: tuple[Dyno, ...]
    switched_to: int | None = None


Action = Union[Create, Remove, StartTakeOut, Rerelease, Serve]


def retire(dyno: Dyno) -> list[Action]:
    """Make `dyno` go away without any request meeting it while it stops."""
    if dyno.take_out is TakeOut.STOP:
        return []  # on its way already
    if dyno.take_out is TakeOut.RESTART or dyno.routable:
        return [StartTakeOut(dyno, TakeOut.STOP)]
    return [Remove(dyno)]


def _is_up(dyno: Dyno) -> bool:
    return (dyno.vm_id is not None and dyno.state is ObservedState.UP
            and bool(dyno.address) and dyno.take_out is None)


def _preference(dyno: Dyno) -> tuple:
    # Which of two dynos sharing a number to keep: serving, then up, then the older one.
    return (not dyno.serving, not _is_up(dyno), dyno.created_at, dyno.id)


def plan_app(app: AppSpec, dynos: Sequence[Dyno]) -> list[Action]:
    """The steps that bring `dynos` (all of the app's) to what `app` says."""
    actions: list[Action] = []
    by_type: dict[str, list[Dyno]] = {}
    for dyno in dynos:
        if dyno.one_off is not None:
            continue
        by_type.setdefault(dyno.type, []).append(dyno)
    for type_ in sorted(set(by_type) | set(app.processes)):
        spec = app.processes.get(type_) if app.release is not None else None
        actions += _plan_type(app, spec, type_, by_type.get(type_, []))
    return actions


def _plan_type(app: AppSpec, spec: ProcessSpec | None, type_: str,
               dynos: list[Dyno]) -> list[Action]:
    staying = {d.id for d in dynos if d.take_out is not TakeOut.STOP}
    twins = [d for d in dynos if d.replaces in staying]
    if not twins:
        return _plan_numbers(app, spec, type_, dynos)
    actions = _plan_numbers(app, spec, type_, [d for d in dynos if d not in twins])
    changed = {a.dyno.id for a in actions if isinstance(a, (Remove, StartTakeOut, Rerelease))}
    return actions + [a for twin in twins if twin.replaces in changed for a in retire(twin)]


def _plan_numbers(app: AppSpec, spec: ProcessSpec | None, type_: str,
                  dynos: list[Dyno]) -> list[Action]:
    if spec is None or spec.quantity == 0 and not dynos:
        return [a for d in dynos for a in retire(d)]
    live = [d for d in dynos if d.take_out is not TakeOut.STOP]
    leaving = {d.number for d in dynos if d.take_out is TakeOut.STOP}

    def current(d: Dyno) -> bool:
        return d.release == app.release and d.size == spec.size

    if type_ == "web" and app.preboot and any(d.serving and not current(d) for d in live):
        return _plan_preboot(app, spec, live)
    actions: list[Action] = []
    kept: dict[int, Dyno] = {}
    for dyno in sorted(live, key=_preference):
        if dyno.number > spec.quantity or dyno.number in kept:
            actions += retire(dyno)
        elif current(dyno):
            kept[dyno.number] = dyno
        elif type_ != "web" and dyno.size == spec.size and dyno.take_out is None:
            actions.append(Rerelease(dyno, app.release))
            kept[dyno.number] = dyno
        else:
            retired = retire(dyno)
            actions += retired
            if any(isinstance(a, StartTakeOut) for a in retired):
                leaving.add(dyno.number)
    # Preboot dynos left waiting (preboot turned off, or nothing older serves any more) serve.
    waiting = tuple(d for d in kept.values() if not d.serving)
    if waiting:
        actions.append(Serve(waiting))
    for number in range(1, spec.quantity + 1):
        if number not in kept and number not in leaving:
            actions.append(Create(type_, number, app.release, spec.size, spec.memory_mb, True))
    return actions


def _plan_preboot(app: AppSpec, spec: ProcessSpec, live: list[Dyno]) -> list[Action]:
    """New web dynos beside the serving old ones; switch in one step once all are up."""
    old = [d for d in live if d.serving and (d.release, d.size) != (app.release, spec.size)]
    old_ids = {d.id for d in old}
    actions: list[Action] = []
    kept: dict[int, Dyno] = {}
    for dyno in sorted(live, key=_preference):
        if dyno.id in old_ids:
            continue
        if (dyno.release, dyno.size) != (app.release, spec.size):
            actions += retire(dyno)  # a preboot dyno of a release that was superseded
        elif dyno.number > spec.quantity or dyno.number in kept:
            actions += retire(dyno)
        else:
            kept[dyno.number] = dyno
    missing = [n for n in range(1, spec.quantity + 1) if n not in kept]
    for number in missing:
        actions.append(Create("web", number, app.release, spec.size, spec.memory_mb, False))
    if not missing and all(_is_up(d) for d in kept.values()):
        waiting = tuple(sorted((d for d in kept.values() if not d.serving),
                               key=lambda d: d.number))
        if waiting:
            actions.append(Serve(waiting, switched_to=app.release))
        for dyno in old:
            actions += retire(dyno)
    return actions


def describe(actions: Iterable[Action]) -> list[str]:
    """One line per action, for logs and test failure messages."""
    lines = []
    for action in actions:
        match action:
            case Create():
                lines.append(f"create {action.name} v{action.release} "
                             f"{'serving' if action.serving else 'preboot'}")
            case Remove():
                lines.append(f"remove {action.dyno.name} ({action.dyno.id})")
            case StartTakeOut():
                lines.append(f"take out {action.dyno.name} ({action.dyno.id}) then "
                             f"{action.then.value}")
            case Rerelease():
                lines.append(f"rerelease {action.dyno.name} v{action.release}")
            case Serve():
                lines.append("serve " + ", ".join(d.name for d in action.dynos)
                             + (f" (switch to v{action.switched_to})"
                                if action.switched_to else ""))
    return lines
