"""The reconciler with stand-in dynos: what starts, stops and restarts for each desired set."""

from __future__ import annotations

import asyncio

from dynomgr.assignments import Assignment, SlugRef
from dynomgr.reconciler import Reconciler, change_reason
import pytest

pytestmark = pytest.mark.unit

SLUG = SlugRef("file:///slug.tgz", "0" * 64)


def assignment(name: str, *, app: str = "hello", release: int = 1, **env: str) -> Assignment:
    return Assignment(app=app, name=name, type=name.split(".")[0], release=release, slug=SLUG, env=env)


class StandInDyno:
    """Records starts and stops; a stop finishes only when the test lets it."""

    def __init__(self, log: list, assignment: Assignment, hold_stops: bool) -> None:
        self.assignment = assignment
        self._log = log
        self._released = asyncio.Event()
        self.stopped = asyncio.Event()
        if not hold_stops:
            self._released.set()

    def start(self) -> None:
        self._log.append(("start", self.assignment.name, self.assignment.release))

    async def stop(self, reason: str) -> None:
        self._log.append(("stop", self.assignment.name, self.assignment.release, reason))
        await self._released.wait()
        self.stopped.set()

    def release(self) -> None:
        self._released.set()


def make(hold_stops: bool = False):
    log: list = []
    made: list[StandInDyno] = []

    def factory(a: Assignment) -> StandInDyno:
        dyno = StandInDyno(log, a, hold_stops)
        made.append(dyno)
        return dyno

    return Reconciler(factory), log, made


async def settle(reconciler: Reconciler) -> None:
    async with asyncio.timeout(5):
        await reconciler.settled()


def keyed(*assignments: Assignment) -> dict:
    return {a.key: a for a in assignments}


async def test_only_changed_dynos_are_touched():
    reconciler, log, _ = make()
    reconciler.apply(keyed(assignment("web.1"), assignment("web.2"), assignment("worker.1")))
    await settle(reconciler)
    assert sorted(log) == [("start", "web.1", 1), ("start", "web.2", 1), ("start", "worker.1", 1)]
    log.clear()
    reconciler.apply(keyed(assignment("web.1", GREETING="hi"), assignment("web.2"), assignment("clock.1")))
    await settle(reconciler)
    assert sorted(log) == [
        ("start", "clock.1", 1),
        ("start", "web.1", 1),
        ("stop", "web.1", 1, "Restarting: config vars changed"),
        ("stop", "worker.1", 1, "Stopping: no longer assigned to this VM"),
    ]
    assert log.index(("stop", "web.1", 1, "Restarting: config vars changed")) < log.index(("start", "web.1", 1))
    assert sorted(d.assignment.name for d in reconciler.dynos()) == ["clock.1", "web.1", "web.2"]


async def test_a_name_never_runs_twice_while_its_old_dyno_is_still_stopping():
    reconciler, log, made = make(hold_stops=True)
    reconciler.apply(keyed(assignment("web.1", release=1)))
    await settle(reconciler)
    for release in (2, 3, 4):  # three new releases while release 1 is still stopping
        reconciler.apply(keyed(assignment("web.1", release=release)))
        await settle(reconciler)
    assert log == [("start", "web.1", 1), ("stop", "web.1", 1, "Restarting for release v2")]
    made[0].release()
    await made[0].stopped.wait()
    await settle(reconciler)
    assert log[2:] == [("start", "web.1", 4)]  # straight to the latest, never 2 or 3
    assert [d.assignment.release for d in reconciler.dynos()] == [4]


async def test_names_kept_by_bad_entries_are_left_alone():
    reconciler, log, _ = make()
    reconciler.apply(keyed(assignment("web.1"), assignment("web.2")))
    await settle(reconciler)
    log.clear()
    reconciler.apply({}, keep=[("hello", "web.1")])
    await settle(reconciler)
    assert log == [("stop", "web.2", 1, "Stopping: no longer assigned to this VM")]
    assert [d.assignment.name for d in reconciler.dynos()] == ["web.1"]


async def test_the_same_name_in_two_apps_is_two_dynos():
    reconciler, log, _ = make()
    reconciler.apply(keyed(assignment("web.1"), assignment("web.1", app="other")))
    await settle(reconciler)
    assert len(reconciler.dynos()) == 2


async def test_drain_stops_everything_and_ignores_later_sets():
    reconciler, log, _ = make()
    reconciler.apply(keyed(assignment("web.1"), assignment("worker.1")))
    await settle(reconciler)
    log.clear()
    await reconciler.drain("Stopping: the dyno manager is shutting down")
    assert sorted(log) == [
        ("stop", "web.1", 1, "Stopping: the dyno manager is shutting down"),
        ("stop", "worker.1", 1, "Stopping: the dyno manager is shutting down"),
    ]
    reconciler.apply(keyed(assignment("web.9")))
    await settle(reconciler)
    assert reconciler.dynos() == []


def test_change_reasons_name_what_changed():
    old = assignment("web.1")
    assert change_reason(old, assignment("web.1", release=8)) == "Restarting for release v8"
    assert change_reason(old, assignment("web.1", X="1")) == "Restarting: config vars changed"
