"""A dyno's states and the transitions between them, as one table.

    down ──▶ starting ──▶ up
               │  ▲        │
               ▼  │        ▼
             crashed ◀─────┘          any of starting/up ──▶ stopping ──▶ down
               │                      crashed ──▶ down (stopped while waiting to restart)
               │                      starting/up ──▶ down (a one-off dyno's command exited)
               └──▶ starting

`starting` covers fetching the slug, unpacking it and booting; `up` means routable (a web dyno's
port accepts connections and its health check, if any, passed). Heroku's `ps` shows the same
names; `stopping` is ours, so that routers can drop a dyno before it stops answering.
"""

from __future__ import annotations

import enum


class DynoState(enum.Enum):
    DOWN = "down"
    STARTING = "starting"
    UP = "up"
    CRASHED = "crashed"
    STOPPING = "stopping"

    def __str__(self) -> str:
        return self.value


_S = DynoState

TRANSITIONS: dict[DynoState, frozenset[DynoState]] = {
    _S.DOWN: frozenset({_S.STARTING}),
    # starting/up -> down: a one-off dyno's command exited (it is never restarted).
    _S.STARTING: frozenset({_S.UP, _S.CRASHED, _S.STOPPING, _S.DOWN}),
    _S.UP: frozenset({_S.CRASHED, _S.STOPPING, _S.DOWN}),
    _S.CRASHED: frozenset({_S.STARTING, _S.DOWN}),
    _S.STOPPING: frozenset({_S.DOWN}),
}


class IllegalTransition(RuntimeError):
    """A bug: code asked for a transition the table does not allow."""

    def __init__(self, dyno: str, old: DynoState, new: DynoState) -> None:
        super().__init__(f"{dyno}: no transition from {old} to {new}")
        self.old, self.new = old, new


def check_transition(dyno: str, old: DynoState, new: DynoState) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(dyno, old, new)
