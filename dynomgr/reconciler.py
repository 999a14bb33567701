"""Converging the dynos that run toward a full desired set.

`apply(desired)` is synchronous and cheap: it records what each dyno (by its key: the control
plane's dyno id, else app and name) should be and wakes that key's driver. Each driver is a
small task that stops what runs under its key when it is no longer wanted or its assignment
changed (any field: release, env, slug, size, health check, restart counter), then starts what
is wanted. Dynos whose assignment did not change are not touched. A new desired
set that arrives while a driver is still stopping a dyno simply changes what the driver does
next, so rapid SIGHUPs (or feed deltas) never start a dyno twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Awaitable, Callable, Iterable, Mapping

from dynomesh.tasks import cancel_and_wait

from dynomgr.assignments import Assignment, Key
from dynomgr.dyno import Dyno


def change_reason(old: Assignment, new: Assignment) -> str:
    """Why a running dyno is being replaced, for its log."""
    if old.release != new.release:
        return f"Restarting for release v{new.release}"
    if old.restart != new.restart and replace(old, restart=new.restart) == new:
        return "Restarting"  # `ps:restart`, in Heroku's words
    changed = [
        what
        for what, a, b in (
            ("config vars", dict(old.env), dict(new.env)),
            ("slug", old.slug, new.slug),
            ("memory size", old.memory_mb, new.memory_mb),
            ("health check", (old.health_check, old.health_check_interval,
                              old.health_check_failures),
             (new.health_check, new.health_check_interval, new.health_check_failures)),
            ("process type", old.type, new.type),
        )
        if a != b
    ]
    return "Restarting: " + (", ".join(changed) or "assignment") + " changed"


class _Slot:
    __slots__ = ("desired", "current", "wake", "task", "removal_reason", "waiting_for")

    def __init__(self) -> None:
        self.desired: Assignment | None = None
        self.current: Dyno | None = None
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.removal_reason = "Stopping: no longer assigned to this VM"
        # What the slot's task waits for outside the reconciler: "a change" of the desired set
        # or "a stop" to finish; None while it has work it can do now.
        self.waiting_for: str | None = None


class Reconciler:
    def __init__(self, make_dyno: Callable[[Assignment], Dyno]) -> None:
        self._make_dyno = make_dyno
        self._slots: dict[Key, _Slot] = {}
        self._closed = False
        self._progress = asyncio.Condition()

    def dynos(self) -> list[Dyno]:
        """Every dyno object that exists right now (running, starting, crashed or stopping)."""
        return [slot.current for slot in self._slots.values() if slot.current is not None]

    def desired(self) -> dict[Key, Assignment]:
        return {k: s.desired for k, s in self._slots.items() if s.desired is not None}

    def apply(self, desired: Mapping[Key, Assignment], *, keep: Iterable[Key] = ()) -> None:
        """Make `desired` the full desired set. Names in `keep` (named by entries that failed
        to parse) keep whatever they have now."""
        if self._closed:
            return
        kept = set(keep)
        for key in set(self._slots) | set(desired):
            if key in kept and key not in desired:
                continue
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
            if slot.desired != desired.get(key):
                slot.desired = desired.get(key)
                slot.removal_reason = "Stopping: no longer assigned to this VM"
                slot.wake.set()
                if slot.waiting_for == "a change":
                    slot.waiting_for = None  # it has work now
            if slot.task is None or slot.task.done():
                slot.waiting_for = None
                slot.task = asyncio.create_task(self._drive(key, slot), name=f"slot {' '.join(key) if isinstance(key, tuple) else key}")

    def adopt(self, dyno: Dyno) -> None:
        """Run a dyno a previous agent left running, wanted as it is until the next `apply`
        says otherwise (a changed or removed assignment then stops it as usual)."""
        key = dyno.assignment.key
        if key in self._slots:
            raise ValueError(f"{dyno.assignment.describe()}: a dyno already runs under this key")
        slot = self._slots[key] = _Slot()
        slot.desired = dyno.assignment
        slot.current = dyno
        dyno.start()
        slot.task = asyncio.create_task(self._drive(key, slot), name=f"slot {dyno.assignment.describe()}")

    async def detach_all(self) -> int:
        """Leave every running dyno to the next agent (the agent exits with --keep-dynos);
        dynos that are not running (crashed, stopping) stop. Returns how many were kept."""
        self._closed = True
        failed: list[Exception] = []
        for slot in self._slots.values():
            if slot.task is not None:
                try:  # a dyno's own task is shielded from its driver: it is not cancelled
                    await cancel_and_wait(slot.task)
                except Exception as exc:  # a bug in a driver; hand the dynos over first
                    failed.append(exc)
        kept = await asyncio.gather(*(dyno.detach() for dyno in self.dynos()))
        if failed:
            raise failed[0]
        return sum(kept)

    async def drain(self, reason: str) -> None:
        """Stop every dyno (the agent is shutting down) and return once all are down."""
        self._closed = True
        for slot in self._slots.values():
            slot.desired = None
            slot.removal_reason = reason
            slot.wake.set()
        tasks = [slot.task for slot in self._slots.values() if slot.task is not None]
        if tasks:
            await asyncio.gather(*tasks)

    async def settled(self) -> None:
        """Return once every slot has done all it can for now: each waits for the desired set
        to change or for a dyno to finish stopping. (What the agent's tests wait for after an
        `apply`, instead of giving the loop some turns and hoping.)"""
        async with self._progress:
            await self._progress.wait_for(
                lambda: all(slot.waiting_for for slot in self._slots.values()))

    async def _wait(self, slot: _Slot, what: str, outside: Awaitable[object]) -> None:
        slot.waiting_for = what
        async with self._progress:
            self._progress.notify_all()
        try:
            await outside
        finally:
            slot.waiting_for = None

    async def _drive(self, key: Key, slot: _Slot) -> None:
        while True:
            slot.wake.clear()
            wanted = slot.desired
            current = slot.current
            if current is not None and current.assignment != wanted:
                reason = slot.removal_reason if wanted is None else change_reason(current.assignment, wanted)
                await self._wait(slot, "a stop", current.stop(reason))
                slot.current = None
                continue  # the desired set may have changed while it stopped
            if wanted is not None and current is None:
                dyno = slot.current = self._make_dyno(wanted)
                dyno.start()
            if slot.desired is None and slot.current is None:
                del self._slots[key]
                async with self._progress:
                    self._progress.notify_all()
                return
            if slot.wake.is_set():
                continue
            await self._wait(slot, "a change", slot.wake.wait())
