"""The pool loop: on the scheduling leader only, keep the VM pool the size the policy says.

Each pass reads the pool in one snapshot, asks the provider what it runs (every reconcile
interval, and after a launch), lets `PoolPlanner` decide, and carries the decision out:

- launch: a VM id and a dynomgr token bound to it are made, the row is written (`launching`)
  *before* the provider is asked, so a crash in between leaves a row the next pass finishes
  (the instance is found by its `dynomesh:vm` tag) instead of an instance nobody knows; a
  failed launch removes the row and revokes the token at once;
- drain: the VM is cordoned and the scheduler gives its dynos twins elsewhere, which serve
  before its own dynos stop (scheduler/drain.py); a drained VM is terminated;
- terminate: the row turns `terminating` (fenced: a deposed leader cannot), the instance is
  terminated, then the rows and the token go.

What the provider shows against what the store says: an instance tagged for a VM with no row
is *unknown* (shown by `dynomesh pool`, logged, never adopted or terminated); a row whose
instance AWS reports terminated (someone else ended it) is forgotten and its dynos are placed
elsewhere. With the `local` provider the pass only removes the rows of VMs lost longer ago than
the retention. A provider error is kept in the store with its code (`dynomesh pool` shows it)
and the pass is retried with back-off; nothing is swallowed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from dynomesh.backoff import BackoffPolicy
from controlplane.aio import lead_while_leading, wait_any
from controlplane.pool.policy import PoolDecision, PoolLimits, PoolPlanner, PoolPolicy, PoolVmView
from controlplane.pool.provider import Boot, Instance, Provider, ProviderError
from controlplane.pool.settings import PoolConfig
from controlplane.store import Store, errors
from controlplane.store.models import Role, VmState
from controlplane.store.pool import PoolSnapshot, PoolVm, PoolVmState, ProviderFailure

log = logging.getLogger("dynomesh.pool")
# Provider errors worth trying again soon (throttling, capacity): 1 s doubling to a minute.
RETRY = BackoffPolicy(1.0, 60.0, jitter=0.2)
# Errors that need an operator (credentials, a bad AMI, an account limit): checked again
# every five minutes, so a fixed cause heals without a restart.
NEEDS_OPERATOR = BackoffPolicy(30.0, 300.0, jitter=0.2)
# Revisions come in bursts (every dyno report is one): passes run at most this often (a pass
# reads every dyno's placement; a VM takes far longer than this to boot).
MIN_PASS_INTERVAL = 0.5


def _unix(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc).timestamp()


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def limits_of(config: PoolConfig, snap: PoolSnapshot) -> PoolLimits:
    """The limits `pool:scale` set, else the flags' (min never above max)."""
    high = config.max_vms if snap.settings.max_vms is None else snap.settings.max_vms
    low = config.min_vms if snap.settings.min_vms is None else snap.settings.min_vms
    return PoolLimits(min(low, high), high)


def views(snap: PoolSnapshot) -> list[PoolVmView]:
    out = []
    for row in snap.pool:
        vm = snap.vms.get(row.vm_id)
        out.append(PoolVmView(row.vm_id, row.state, vm.capacity_mb if vm else row.capacity_mb,
                              row.launched_at, registered=vm is not None,
                              lost=vm is not None and vm.state is VmState.LOST,
                              dynos_mb=tuple(snap.dyno_memory.get(row.vm_id, ()))))
    return out


class PoolManager:
    def __init__(self, store: Store, config: PoolConfig, provider: Provider, *,
                 leading: asyncio.Event, epoch: Callable[[], int | None],
                 control_urls: tuple[str, ...], clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._config = config
        self._provider = provider
        self._leading = leading
        self._epoch = epoch
        self._control_urls = control_urls
        self._clock = clock
        self._wake = asyncio.Event()
        self._reconcile_at = 0.0
        self.passes = 0
        self.last_decision = PoolDecision()

    @property
    def provider(self) -> Provider:
        return self._provider

    async def run(self) -> None:
        await lead_while_leading(self._leading, self._lead, signal=self._store.db.signal,
                                 wake=self._wake, name="pool-wake")

    async def _lead(self) -> None:
        planner = PoolPlanner(PoolPolicy(self._config.capacity_mb or 1,
                                         self._config.idle_grace, self._config.launch_timeout))
        self._reconcile_at = 0.0
        retry, operator = RETRY.start(), NEEDS_OPERATOR.start()
        while self._leading.is_set():
            self._wake.clear()
            try:
                wake_at = await self.run_pass(planner)
                retry.reset()
                operator.reset()
                timeout = None if math.isinf(wake_at) else max(0.0, wake_at - self._clock())
            except ProviderError as exc:
                await self._record(exc)
                timeout = (retry if exc.retryable else operator).next_delay()
                log.warning("pool: %s failed: %s: %s; trying again in %.0fs", exc.operation,
                            exc.code, exc.message, timeout)
                self._reconcile_at = 0.0  # look at what AWS runs before trying again
                await asyncio.sleep(timeout)  # back-off: nothing but time makes AWS answer
                continue
            except errors.NotLeader as exc:
                log.info("pool: stops: %s", exc)
                timeout = MIN_PASS_INTERVAL
            except (errors.Unavailable, errors.Busy) as exc:
                timeout = retry.next_delay()
                log.warning("pool: the store failed: %s; again in %.1fs", exc, timeout)
            await asyncio.sleep(MIN_PASS_INTERVAL)  # batch a burst of revisions into one pass
            await wait_any((self._wake,), timeout)

    async def _record(self, exc: ProviderError) -> None:
        try:
            await self._store.pool.record_error(
                ProviderFailure(exc.code, exc.message, exc.operation, self._clock()))
        except errors.StoreError as store_exc:
            log.warning("pool: could not store the provider error %s: %s", exc.code, store_exc)

    async def run_pass(self, planner: PoolPlanner) -> float:
        """One pass; returns when the next is due even if nothing changes."""
        epoch = self._epoch()
        if epoch is None:
            raise errors.NotLeader("this node does not schedule")
        now = self._clock()
        wake_at = await self._purge_lost(epoch, now)
        if not self._provider.can_launch:
            self.passes += 1
            return wake_at
        snap = await self._store.pool.snapshot()
        if now >= self._reconcile_at:
            if await self._reconcile(epoch, snap, await self._provider.describe(), now):
                snap = await self._store.pool.snapshot()
            self._reconcile_at = now + self._config.reconcile_interval
        decision = planner.decide(views(snap), snap.waiting_mb, limits_of(self._config, snap),
                                  now)
        if decision.notes != self.last_decision.notes:  # said once, not every pass
            for note in decision.notes:
                log.warning("pool: %s", note)
        self.last_decision = decision
        await self._apply(epoch, snap, decision, now)
        self.passes += 1
        if decision.launch:
            self._reconcile_at = now  # find the new instances' addresses soon
        return min(wake_at, decision.wake_at, self._reconcile_at)

    async def _purge_lost(self, epoch: int, now: float) -> float:
        """Remove rows of non-pool VMs lost longer ago than the retention; when to look next."""
        retention = self._config.lost_retention
        # `lost_at` is to the second: a VM lost at S is due a second after S + retention, when
        # the cutoff (also to the second) has passed S for sure.
        due = [_unix(at) + retention + 1.0 for _, at in await self._store.pool.lost_since()]
        if due and min(due) <= now:
            for vm_id in await self._store.pool.purge_lost(epoch, _iso(now - retention)):
                log.info("pool: removed lost VM %s (lost more than %.0fs ago)", vm_id,
                         retention)
        return min((at for at in due if at > now), default=math.inf)

    async def _reconcile(self, epoch: int, snap: PoolSnapshot, instances: list[Instance],
                         now: float) -> bool:
        """Compare what the provider runs with the rows; True if rows changed."""
        rows = {row.vm_id: row for row in snap.pool}
        by_id = {i.instance_id: i for i in instances}
        changed = False
        unknown = []
        for instance in instances:
            row = rows.get(instance.vm_id or "")
            if row is None or (row.instance_id not in (None, instance.instance_id)):
                if not instance.gone:
                    unknown.append({"instance_id": instance.instance_id,
                                    "state": instance.state, "vm_tag": instance.vm_id,
                                    "address": instance.address,
                                    "instance_type": instance.instance_type})
            elif row.instance_id is None:
                await self._store.pool.set_instance(epoch, row.vm_id, instance.instance_id)
                changed = True
        for row in snap.pool:
            found = by_id.get(row.instance_id or "")
            if (row.instance_id is not None and row.state is not PoolVmState.TERMINATING
                    and (found is None or found.gone)
                    and now - row.launched_at >= self._config.reconcile_interval):
                # Terminated behind our back (or never there): its dynos go elsewhere.
                log.warning("pool: instance %s of VM %s is %s: forgetting the VM",
                            row.instance_id, row.vm_id, found.state if found else "gone")
                await self._store.pool.forget(epoch, row.vm_id)
                changed = True
        for item in unknown:
            log.warning("pool: instance %s (%s, tag dynomesh:vm=%s) is tagged for this pool "
                        "but no VM of the pool knows it: left alone; terminate it or remove "
                        "its tag", item["instance_id"], item["state"], item["vm_tag"])
        await self._store.pool.record_unknown(unknown, now)
        return changed

    async def _apply(self, epoch: int, snap: PoolSnapshot, decision: PoolDecision,
                     now: float) -> None:
        rows = {row.vm_id: row for row in snap.pool}
        for vm_id in decision.activate + decision.undrain:
            await self._store.pool.set_state(epoch, vm_id, PoolVmState.ACTIVE, now)
        for vm_id in decision.drain:
            log.info("pool: draining VM %s: its dynos move before it is terminated", vm_id)
            await self._store.pool.set_state(epoch, vm_id, PoolVmState.DRAINING, now)
        for vm_id, why in decision.terminate:
            await self._terminate(epoch, rows[vm_id], why, now)
        for _ in range(decision.launch):
            await self._launch(epoch, now)

    async def _terminate(self, epoch: int, row: PoolVm, why: str, now: float) -> None:
        log.info("pool: terminating VM %s (%s): %s", row.vm_id, row.instance_id or "no instance",
                 why)
        if row.state is not PoolVmState.TERMINATING:
            await self._store.pool.set_state(epoch, row.vm_id, PoolVmState.TERMINATING, now)
        if row.instance_id is not None:
            await self._provider.terminate([row.instance_id])
        await self._store.pool.forget(epoch, row.vm_id)

    async def _launch(self, epoch: int, now: float) -> None:
        vm_id = f"vm-{uuid.uuid4().hex[:10]}"
        capacity = self._config.capacity_mb or 1
        issued = await self._store.tokens.create(
            Role.DYNOMGR, vm_id=vm_id, description=f"pool VM {vm_id} ({self._provider.name})")
        try:
            await self._store.pool.add_launching(epoch, PoolVm(
                vm_id, self._provider.name, None, PoolVmState.LAUNCHING, capacity,
                issued.token.id, now, now))
        except errors.StoreError:
            await self._store.tokens.revoke(issued.token.id)
            raise
        boot = Boot(vm_id, issued.secret, self._control_urls, capacity)
        try:
            instance_id = await self._provider.launch(boot)
        except ProviderError:
            await self._store.pool.forget(epoch, vm_id)  # and its token: nothing runs it
            raise
        await self._store.pool.set_instance(epoch, vm_id, instance_id)
        log.info("pool: launched VM %s as %s", vm_id, instance_id)
