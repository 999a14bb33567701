"""The FormationScheduler: turns formation into dynos on VMs, on one control node at a time.

Every control node runs one; only the node holding the database's leadership schedules (on
PostgreSQL an advisory lock, so a standby takes over the moment the leader's session ends; on
SQLite the single node leads). The leader wakes on every revision (its own commits, and other
nodes' through LISTEN/NOTIFY), when route followers got further while a take-out waits for them,
and at the next time something is due (a take-out's grace, a VM's heartbeat deadline). No
polling.

A pass is one write transaction, fenced by the leader epoch:

1. VMs silent past the agent timeout (never within the start-up grace) are lost; their dynos
   are placed elsewhere, leaving the lost VM in the same transaction.
2. Take-outs that routers have (plus the grace), or that waited long enough, complete: the dyno
   is removed from its VM's assignments, or restarted.
3. Dynos on VMs the pool drains get twins elsewhere, and switch to them once they are up
   (`drain.plan_drain`); nothing new is placed on a draining VM.
4. Apps whose formation, release, features or dynos changed since the last pass are planned
   (`planner.plan_app`) and the plan applied; new dynos are placed (`placement.Placement`).
5. Unplaced dynos are placed where room appeared.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from dynomesh.backoff import BackoffPolicy
from dynomesh.tasks import cancel_and_wait
from controlplane.aio import wait_any
from controlplane.applog import AppLog
from controlplane.feeds.progress import RouteFollowers, fleet_delivered
from controlplane.scheduler import drain
from controlplane.scheduler.liveness import AgentLiveness
from controlplane.scheduler.placement import DynoRequest, Placement, VmRoom
from controlplane.scheduler.planner import (Action, AppSpec, Create, Remove, Rerelease, Serve,
                                            StartTakeOut, describe, plan_app)
from controlplane.scheduler.takeout import TakeOutPolicy, TakeOutTracker
from controlplane.store import Store, errors
from controlplane.store.database import Leadership
from controlplane.store.fleet import FleetPass
from controlplane.store.models import Dyno, TakeOut, Vm, VmLoad, VmState
from controlplane.store.nodes import PROGRESS_CHANNEL

log = logging.getLogger("dynomesh.scheduler")
# Back-off while the database cannot be reached: 0.1 s doubling to 5 s.
RETRY = BackoffPolicy(0.1, 5.0)  # while the database is away


@dataclass(frozen=True)
class SchedulerConfig:
    liveness: AgentLiveness = AgentLiveness()
    take_out: TakeOutPolicy = TakeOutPolicy()


@dataclass(frozen=True)
class PassResult:
    revision: int  # every change up to here was looked at
    wake_at: float  # look again by then even if nothing happens


def vm_room(vm: Vm, load: VmLoad) -> VmRoom:
    """A ready VM's room for placement: memory and ports (one per web dyno) left."""
    return VmRoom(vm.id, vm.capacity_mb, load.used_mb,
                  vm.ports[1] - vm.ports[0] + 1 - load.web_dynos, load.app_dynos)


class _Rooms:
    """The pass's placement, built on first use from the VMs' room at that moment."""

    def __init__(self, fleet: FleetPass, vms: list[Vm], rng: random.Random) -> None:
        self._fleet, self._vms, self._rng = fleet, vms, rng
        self._placement: Placement | None = None

    async def place(self, request: DynoRequest) -> str | None:
        if self._placement is None:
            loads = await self._fleet.vm_loads()
            self._placement = Placement(
                [vm_room(vm, loads.get(vm.id, VmLoad())) for vm in self._vms], self._rng)
        return self._placement.place(request)

    def free(self, dyno: Dyno) -> None:
        if self._placement is not None and dyno.vm_id is not None:
            self._placement.release(dyno.vm_id, DynoRequest.for_dyno(dyno))


class FormationScheduler:
    def __init__(self, store: Store, *, node_id: str, followers: RouteFollowers,
                 config: SchedulerConfig, applog: AppLog,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self._store = store
        self._db = store.db
        self._node_id = node_id
        self._followers = followers
        self._config = config
        self._applog = applog
        self._clock = clock
        self._rng = rng or random.Random()
        self._tracker = TakeOutTracker(config.take_out)
        self._wake = asyncio.Event()
        self._waiting_on_followers = False
        self._progress = 0  # counts follower progress, to catch what arrives mid-pass
        self.leading = asyncio.Event()  # set while this node schedules
        self.epoch: int | None = None  # the leader epoch while leading (fences the pool too)
        self.decided = asyncio.Event()  # set once this node leads or knows it stands by
        self.passes = 0

    def _on_progress(self) -> None:
        self._progress += 1
        if self._waiting_on_followers:
            self._wake.set()

    async def run(self) -> None:
        """Wait to lead, lead until that ends, and again, until cancelled."""
        self._followers.on_change(self._on_progress)
        await self._db.subscribe(PROGRESS_CHANNEL, lambda _: self._on_progress())
        watcher = asyncio.create_task(self._watch_revisions(), name="scheduler-wake")
        backoff = RETRY.start()
        try:
            while True:
                try:
                    async with self._db.leadership(on_standby=self._stand_by) as held:
                        backoff.reset()
                        await self._lead(held)
                except errors.StoreError as exc:
                    delay = backoff.next_delay()
                    log.warning("scheduler: cannot lead: %s; trying again in %.1fs", exc, delay)
                    await asyncio.sleep(delay)  # back-off while the database is away
        finally:
            await cancel_and_wait(watcher)

    def _stand_by(self) -> None:
        log.info("scheduler: another node schedules; node %s stands by", self._node_id)
        self.decided.set()

    async def _watch_revisions(self) -> None:
        seen = self._db.signal.revision
        while True:
            seen = await self._db.signal.wait_beyond(seen)
            self._wake.set()

    async def _lead(self, held: Leadership) -> None:
        epoch = await self._store.nodes.claim_leadership(self._node_id, self._clock())
        log.info("scheduler: node %s schedules now (epoch %d)", self._node_id, epoch)
        self.epoch = epoch
        watching_since = self._clock()
        seen: int | None = None  # None: look at every app
        backoff = RETRY.start()
        self.leading.set()
        self.decided.set()
        try:
            while not held.lost.is_set():
                self._wake.clear()
                try:
                    result = await self.run_pass(epoch, seen, watching_since)
                except errors.NotLeader as exc:
                    log.warning("scheduler: node %s stops scheduling: %s", self._node_id, exc)
                    return
                except (errors.Unavailable, errors.Busy) as exc:
                    delay = backoff.next_delay()
                    log.warning("scheduler: pass failed: %s; again in %.1fs", exc, delay)
                    await wait_any((held.lost,), delay)
                    # Heartbeats may not have been stored meanwhile: the grace starts over.
                    watching_since = self._clock()
                    continue
                backoff.reset()
                seen = result.revision
                self.passes += 1
                timeout = None if math.isinf(result.wake_at) else result.wake_at - self._clock()
                await wait_any((self._wake, held.lost), timeout)
            log.warning("scheduler: node %s lost its leader lock", self._node_id)
        finally:
            self.leading.clear()
            self.epoch = None

    async def run_pass(self, epoch: int, seen: int | None, watching_since: float) -> PassResult:
        notes: list[tuple[str, str]] = []  # app log lines, written once the pass committed
        progress = self._progress
        async with self._store.fleet.scheduling(epoch) as fleet:
            now = self._clock()
            revision = await fleet.revision()
            dirty = await fleet.changed_apps(seen)
            vms = await fleet.vms()
            liveness = self._config.liveness
            lost = [vm for vm in vms if vm.state is VmState.READY and liveness.is_lost(
                vm.heartbeat_at, now=now, watching_since=watching_since)]
            ready = [vm for vm in vms if vm.state is VmState.READY and vm not in lost]
            wake_at = min((liveness.check_at(vm.heartbeat_at, watching_since=watching_since)
                           for vm in ready), default=math.inf)
            cordoned = await fleet.cordoned()
            rooms = _Rooms(fleet, [vm for vm in ready if vm.id not in cordoned], self._rng)
            for vm in lost:
                for app in await self._replace_lost(fleet, vm, rooms, now):
                    if dirty is not None:
                        dirty.add(app)
            due, touched = await self._finish_take_outs(fleet, rooms, revision, now)
            wake_at = min(wake_at, due)
            touched |= await self._drain(fleet, cordoned, rooms, now)
            if dirty is not None:
                dirty |= touched
            for app, dynos in await fleet.apps(dirty):
                actions = plan_app(app, dynos)
                if actions:
                    log.debug("scheduler: %s: %s", app.name, "; ".join(describe(actions)))
                for action in actions:
                    note = await self._apply(fleet, app, action, rooms, now)
                    if note:
                        notes.append((app.name, note))
            for dyno, app_name in await fleet.unplaced():
                target = await rooms.place(DynoRequest.for_dyno(dyno))
                if target is not None:
                    await fleet.place(dyno, app_name, target)
        for app_name, note in notes:
            self._applog.write(app_name, note)
        if self._waiting_on_followers and self._progress != progress:
            self._wake.set()  # followers got further while this pass ran: look again
        return PassResult(revision, wake_at)

    async def _replace_lost(self, fleet: FleetPass, vm: Vm, rooms: _Rooms,
                            now: float) -> set[str]:
        dynos = await fleet.dynos_on(vm.id)
        log.warning("scheduler: VM %s sent no heartbeat for %.0fs: lost; placing its %d "
                    "dynos elsewhere", vm.id, now - vm.heartbeat_at, len(dynos))
        await fleet.mark_lost(vm)
        apps = set()
        for dyno, app_name in dynos:
            apps.add(app_name)
            if dyno.take_out is TakeOut.STOP:
                await fleet.remove(dyno, app_name)
                continue
            if dyno.one_off is not None:  # its session and its work were on that VM
                await fleet.end_one_off(dyno, app_name, f"its VM {vm.id} was lost")
                continue
            target = await rooms.place(DynoRequest.for_dyno(dyno))
            await fleet.place(dyno, app_name, target)
            if target is None:
                log.warning("scheduler: %s %s is unplaced: no VM has %d MB free",
                            app_name, dyno.name, dyno.memory_mb)
        return apps

    async def _drain(self, fleet: FleetPass, cordoned: set[str], rooms: _Rooms,
                     now: float) -> set[str]:
        """Move the dynos off draining VMs, each serving elsewhere before it stops; return the
        apps touched."""
        twins = await fleet.twins()
        if not cordoned and not twins:
            return set()
        draining = await fleet.draining(cordoned)
        app_of = {dyno.id: app for dyno, app in draining + twins}
        steps = drain.plan_drain([d for d, _ in draining], [d for d, _ in twins], cordoned)
        if steps:
            log.info("scheduler: drain: %s", "; ".join(drain.describe(steps)))
        touched = set()
        for step in steps:
            dyno = drain.subject(step)
            app = app_of[dyno.id]
            if await self._drain_step(fleet, step, app, rooms, now):
                touched.add(app)
        return touched

    @staticmethod
    async def _drain_step(fleet: FleetPass, step: drain.DrainStep, app: str, rooms: _Rooms,
                          now: float) -> bool:
        match step:
            case drain.MakeTwin(original=original):
                target = await rooms.place(DynoRequest.for_dyno(original))
                if target is None:
                    log.warning("scheduler: drain: no VM has %d MB for a twin of %s %s",
                                original.memory_mb, app, original.name)
                    return False
                await fleet.create_twin(original, app, target)
            case drain.Switch(original=original, twin=twin):
                await fleet.switch_to_twin(original, twin, app, now)
            case drain.Move(dyno=dyno):
                target = await rooms.place(DynoRequest.for_dyno(dyno))
                if target is None:
                    return False  # stays until room appears
                await fleet.place(dyno, app, target)
            case drain.DropTwin(twin=twin):
                await fleet.remove(twin, app)
                rooms.free(twin)
        return True

    async def _finish_take_outs(self, fleet: FleetPass, rooms: _Rooms, revision: int,
                                now: float) -> tuple[float, set[str]]:
        """Complete the take-outs that are due; return when the next is, and the apps touched."""
        taken = await fleet.taken_out()
        self._tracker.retain({dyno.id for dyno, _ in taken})
        delivered = None
        if taken:
            delivered = fleet_delivered(self._followers.delivered(),
                                        await fleet.other_nodes(self._node_id), now=now)
        due, touched, waiting = math.inf, set(), False
        for dyno, app_name in taken:
            decision = self._tracker.decide(dyno.id, revision=dyno.take_out_revision,
                                            started_at=dyno.take_out_at or now,
                                            delivered=delivered, now=now)
            if not decision.ready:
                due = min(due, decision.wake_at)
                waiting = waiting or (delivered is not None
                                      and delivered < dyno.take_out_revision)
                continue
            self._tracker.forget(dyno.id)
            touched.add(app_name)
            if dyno.take_out is TakeOut.STOP:
                await fleet.remove(dyno, app_name)
                rooms.free(dyno)
            else:
                await fleet.restart(dyno, app_name)
        self._waiting_on_followers = waiting
        return due, touched

    async def _apply(self, fleet: FleetPass, app: AppSpec, action: Action, rooms: _Rooms,
                     now: float) -> str | None:
        """Apply one planned step; return an app log line to write, if it makes one."""
        match action:
            case Create():
                target = await rooms.place(DynoRequest(app.id, action.memory_mb,
                                                       action.type == "web"))
                await fleet.create_dyno(app, action, target)
                if target is None:
                    log.warning("scheduler: %s %s is unplaced: no VM has %d MB free",
                                app.name, action.name, action.memory_mb)
            case Remove():
                await fleet.remove(action.dyno, app.name)
                rooms.free(action.dyno)
            case StartTakeOut():
                await fleet.start_take_out(action.dyno, app.name, action.then, now)
            case Rerelease():
                await fleet.rerelease(action.dyno, action.release)
            case Serve():
                await fleet.serve(action.dynos, app.name)
                if action.switched_to is not None:
                    return f"Preboot: switched to v{action.switched_to}"
        return None

