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
3. Apps whose formation, release, features or dynos changed since the last pass are planned
   (`planner.plan_app`) and the plan applied; new dynos are placed (`placement.Placement`).
4. Unplaced dynos are placed where room appeared.
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
from controlplane.scheduler import fleet
from controlplane.scheduler.liveness import AgentLiveness
from controlplane.scheduler.placement import DynoRequest, Placement
from controlplane.scheduler.planner import (Action, AppSpec, Create, Remove, Rerelease, Serve,
                                            StartTakeOut, describe, plan_app)
from controlplane.scheduler.takeout import TakeOutPolicy, TakeOutTracker
from controlplane.store import errors
from controlplane.store.database import Database, Leadership, Transaction
from controlplane.store.dynos import remove_now, restart_now, start_take_out
from controlplane.store.models import Dyno, TakeOut, VmState
from controlplane.store.revision import Feed

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


class _Rooms:
    """The pass's placement, built on first use from the VMs' room at that moment."""

    def __init__(self, tx: Transaction, vms, rng: random.Random) -> None:
        self._tx, self._vms, self._rng = tx, vms, rng
        self._placement: Placement | None = None

    async def place(self, request: DynoRequest) -> str | None:
        if self._placement is None:
            self._placement = Placement(await fleet.vm_rooms(self._tx, self._vms), self._rng)
        return self._placement.place(request)

    def free(self, dyno: Dyno) -> None:
        if self._placement is not None and dyno.vm_id is not None:
            self._placement.release(dyno.vm_id, fleet.request_for(dyno))


class FormationScheduler:
    def __init__(self, db: Database, *, node_id: str, followers: RouteFollowers,
                 config: SchedulerConfig, applog: AppLog,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self._db = db
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
        self.decided = asyncio.Event()  # set once this node leads or knows it stands by
        self.passes = 0

    def poke(self) -> None:
        self._wake.set()

    def _on_progress(self) -> None:
        self._progress += 1
        if self._waiting_on_followers:
            self._wake.set()

    async def run(self) -> None:
        """Wait to lead, lead until that ends, and again, until cancelled."""
        self._followers.on_change(self._on_progress)
        await self._db.subscribe(fleet.PROGRESS_CHANNEL, lambda _: self._on_progress())
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
        epoch = await fleet.claim_leadership(self._db, self._node_id, self._clock())
        log.info("scheduler: node %s schedules now (epoch %d)", self._node_id, epoch)
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
                except fleet.NotLeader as exc:
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

    async def run_pass(self, epoch: int, seen: int | None, watching_since: float) -> PassResult:
        notes: list[tuple[str, str]] = []  # app log lines, written once the pass committed
        progress = self._progress
        async with self._db.write() as tx:
            await fleet.check_epoch(tx, epoch)
            now = self._clock()
            revision = await tx.current_revision()
            dirty = await _dirty_apps(tx, seen)
            vms = await fleet.load_vms(tx)
            liveness = self._config.liveness
            lost = [vm for vm in vms if vm.state is VmState.READY and liveness.is_lost(
                vm.heartbeat_at, now=now, watching_since=watching_since)]
            ready = [vm for vm in vms if vm.state is VmState.READY and vm not in lost]
            wake_at = min((liveness.check_at(vm.heartbeat_at, watching_since=watching_since)
                           for vm in ready), default=math.inf)
            rooms = _Rooms(tx, ready, self._rng)
            for vm in lost:
                for app in await self._replace_lost(tx, vm, rooms, now):
                    if dirty is not None:
                        dirty.add(app)
            due, touched = await self._finish_take_outs(tx, rooms, revision, now)
            wake_at = min(wake_at, due)
            if dirty is not None:
                dirty |= touched
            for app, dynos in await fleet.load_apps(tx, dirty):
                actions = plan_app(app, dynos)
                if actions:
                    log.debug("scheduler: %s: %s", app.name, "; ".join(describe(actions)))
                for action in actions:
                    note = await self._apply(tx, app, action, rooms, now)
                    if note:
                        notes.append((app.name, note))
            for dyno, app_name in await fleet.load_unplaced(tx):
                target = await rooms.place(fleet.request_for(dyno))
                if target is not None:
                    await fleet.place_dyno(tx, dyno, app_name, target)
        for app_name, note in notes:
            self._applog.write(app_name, note)
        if self._waiting_on_followers and self._progress != progress:
            self._wake.set()  # followers got further while this pass ran: look again
        return PassResult(revision, wake_at)

    async def _replace_lost(self, tx: Transaction, vm, rooms: _Rooms, now: float) -> set[str]:
        dynos = await fleet.load_dynos_on(tx, vm.id)
        log.warning("scheduler: VM %s sent no heartbeat for %.0fs: lost; placing its %d "
                    "dynos elsewhere", vm.id, now - vm.heartbeat_at, len(dynos))
        await fleet.mark_lost(tx, vm)
        apps = set()
        for dyno, app_name in dynos:
            apps.add(app_name)
            if dyno.take_out is TakeOut.STOP:
                await remove_now(tx, dyno, app_name)
                continue
            target = await rooms.place(fleet.request_for(dyno))
            await fleet.place_dyno(tx, dyno, app_name, target)
            if target is None:
                log.warning("scheduler: %s %s is unplaced: no VM has %d MB free",
                            app_name, dyno.name, dyno.memory_mb)
        return apps

    async def _finish_take_outs(self, tx: Transaction, rooms: _Rooms, revision: int,
                                now: float) -> tuple[float, set[str]]:
        """Complete the take-outs that are due; return when the next is, and the apps touched."""
        taken = await fleet.load_taken_out(tx)
        self._tracker.retain({dyno.id for dyno, _ in taken})
        delivered = None
        if taken:
            delivered = fleet_delivered(self._followers.delivered(),
                                        await fleet.other_nodes(tx, self._node_id), now=now)
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
                await remove_now(tx, dyno, app_name)
                rooms.free(dyno)
            else:
                await restart_now(tx, dyno, app_name)
        self._waiting_on_followers = waiting
        return due, touched

    async def _apply(self, tx: Transaction, app: AppSpec, action: Action, rooms: _Rooms,
                     now: float) -> str | None:
        """Apply one planned step; return an app log line to write, if it makes one."""
        match action:
            case Create():
                target = await rooms.place(DynoRequest(app.id, action.memory_mb,
                                                       action.type == "web"))
                await fleet.create_dyno(tx, app, action, target)
                if target is None:
                    log.warning("scheduler: %s %s is unplaced: no VM has %d MB free",
                                app.name, action.name, action.memory_mb)
            case Remove():
                await remove_now(tx, action.dyno, app.name)
                rooms.free(action.dyno)
            case StartTakeOut():
                await start_take_out(tx, action.dyno, app.name, action.then, now)
            case Rerelease():
                await fleet.rerelease(tx, action.dyno, action.release)
            case Serve():
                await fleet.serve(tx, action.dynos, app.name)
                if action.switched_to is not None:
                    return f"Preboot: switched to v{action.switched_to}"
        return None


async def _dirty_apps(tx: Transaction, seen: int | None) -> set[str] | None:
    """Apps changed after `seen` (None: every app, also when that history is gone)."""
    if seen is None:
        return None
    apps: set[str] = set()
    for feed in (Feed.ROUTES, Feed.FORMATION):
        try:
            changes = await tx.changes_since(feed, seen)
        except errors.HistoryExpired:
            return None
        apps |= {change.key for change in changes.changes}
    return apps
