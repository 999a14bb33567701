"""A control node's share of the log drains: which it delivers (leases), and their deliveries.

Every control node runs one `DrainService`. Each pass (every `renew` seconds, and at once when
a drain is added or removed anywhere, by `NOTIFY dynomesh_drains`) is two store calls:

1. renew the leases of the drains this node delivers, recording for each how far it got (the
   newest seq sent) and its delivery totals; a drain the renewal no longer finds (removed, or
   taken over after this node was away) has its delivery stopped;
2. claim the drains nobody holds, or whose owner let its lease run out (it died, or lost the
   database), and start a delivery for each, resuming after its recorded cursor: the lines the
   store still keeps since then go first, then the hub's new ones.

A node that cannot renew stops its deliveries before its leases run out (`LeaseTimes`), so
another node that takes a drain over never sends beside it. Every store call of a pass has
that deadline: a database that hangs (in the renewal, the claim, or the read of a claimed
drain's history) counts as one that fails, and the pass ends in time for the next. Stopping
the node gives its drains back with their cursors, and the other nodes take them at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dynomesh.tasks import cancel_and_wait
from controlplane.aio import wait_event
from controlplane.applog import AppLog
from controlplane.drains.delivery import DeliverySettings, DrainDelivery
from controlplane.drains.transport import transport_for
from controlplane.drains.urls import BadDrainUrl, parse
from controlplane.logs.hub import LogHub
from controlplane.store import Store, errors
from controlplane.store.drains import NOTIFY_CHANNEL, HeldLease
from controlplane.store.logs import LogEntry
from controlplane.store.models import Drain, DrainStats

log = logging.getLogger("dynomesh.drains")
# Drains one node claims in one pass (the rest wait for the next pass, or another node).
CLAIM_BATCH = 100
# Giving the drains back when the node stops waits this long for the database at most: after
# that, other nodes take them when their leases run out.
RELEASE_TIMEOUT = 5.0


@dataclass(frozen=True)
class LeaseTimes:
    """How long a drain's lease lasts and how often it is renewed: a node that dies loses its
    drains after `ttl`; one that cannot renew stops delivering `renew` seconds before that."""

    ttl: float = 10.0
    renew: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.renew * 2 <= self.ttl:
            raise ValueError(f"a drain lease of {self.ttl:g} s must last at least twice its "
                             f"renewal interval ({self.renew:g} s)")

    def stop_by(self, renewed_at: float) -> float:
        """When a node that last renewed at `renewed_at` must have stopped delivering: a
        renewal interval before the lease ends, the margin for clocks that disagree."""
        return renewed_at + self.ttl - self.renew


@dataclass(frozen=True)
class DrainSettings:
    lease: LeaseTimes = field(default_factory=LeaseTimes)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    # Certificates (PEM) trusted for TLS receivers besides the system's: a private CA.
    ca_file: Path | None = None

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=str(self.ca_file))
        return context


class _Running:
    __slots__ = ("delivery", "task", "base")

    def __init__(self, delivery: DrainDelivery, task: asyncio.Task, base: DrainStats) -> None:
        self.delivery = delivery
        self.task = task
        self.base = base  # the totals recorded before this node took the drain


class DrainService:
    def __init__(self, store: Store, hub: LogHub, applog: AppLog, node_id: str,
                 settings: DrainSettings | None = None, *,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self._store = store
        self._hub = hub
        self._applog = applog
        self.node_id = node_id
        self.settings = settings or DrainSettings()
        self._clock = clock
        self._rng = rng or random.Random()
        self._tls = self.settings.tls_context()
        self._running: dict[str, _Running] = {}
        self._wake = asyncio.Event()
        self._renewed_at: float | None = None
        # Set after every lease pass and every delivery attempt, for whoever watches.
        self.progress = asyncio.Event()

    async def start(self) -> None:
        if self._store.db.shared:
            await self._store.db.subscribe(NOTIFY_CHANNEL, lambda _: self._wake.set())

    def wake(self) -> None:
        """A drain was added or removed through this node: look now."""
        self._wake.set()

    # -- what the API and /metrics show -------------------------------------------------------

    def stats(self, drain: Drain) -> DrainStats:
        """The drain's totals: live if this node delivers it, else as its owner recorded."""
        running = self._running.get(drain.id)
        if running is None:
            return drain.stats
        return running.base.plus(running.delivery.stats())

    def deliveries(self) -> list[tuple[Drain, DrainStats, int]]:
        """This node's drains: each one's totals and the lines its buffer holds."""
        return [(r.delivery.drain, r.base.plus(r.delivery.stats()), r.delivery.held)
                for r in self._running.values()]

    # -- the lease loop -------------------------------------------------------------------------

    async def run(self) -> None:
        lease = self.settings.lease
        while True:
            self._wake.clear()
            started = self._clock()
            await self._pass()
            self.progress.set()
            # Passes are a renewal interval apart from start to start: a pass that spent its
            # time starting deliveries (a slow history read) must not push the next renewal
            # to the moment this node has to stop delivering.
            pause = max(0.0, started + lease.renew - self._clock())
            if self._running and self._renewed_at is not None:
                # After failed renewals, the next pass comes by the time to stop at the latest.
                pause = min(pause, max(0.0, lease.stop_by(self._renewed_at) - self._clock()))
            await wait_event(self._wake, pause)

    async def _pass(self) -> None:
        lease = self.settings.lease
        now = self._clock()
        for drain_id in [d for d, r in self._running.items() if r.task.done()]:
            await self._stop(drain_id)  # its task ended of a bug (logged): claimed afresh later
        # While delivering, the renewal must be done by the time this node has to stop: a
        # database that hangs counts as one that fails.
        budget = (lease.stop_by(self._renewed_at) - now
                  if self._running and self._renewed_at is not None else None)
        try:
            async with asyncio.timeout(None if budget is None else max(budget, 0.0)):
                kept = await self._store.drains.renew(self.node_id, now, lease.ttl,
                                                      self._held())
        except (errors.StoreError, TimeoutError) as exc:
            reason = str(exc) or "no answer in time"
            if self._running and (budget is None or self._clock() - now >= budget):
                log.warning("drains: cannot renew this node's drain leases (%s); stopping "
                            "their delivery before another node takes them over", reason)
                for drain_id in list(self._running):
                    await self._stop(drain_id)
            else:
                log.warning("drains: cannot renew drain leases: %s", reason)
            return
        self._renewed_at = now
        for drain_id in [d for d in self._running if d not in kept]:
            await self._stop(drain_id)
        await self._claim(now, deadline=now + lease.renew)

    async def _claim(self, now: float, *, deadline: float) -> None:
        """Claim drains and start their deliveries, all done by `deadline` (by the injected
        clock): when the next pass is due, so that its renewal still has its whole budget
        (a renewal interval before the leases renewed at `now` must stop). With less than
        half of that left (a slow renewal), no claims this pass."""
        lease = self.settings.lease
        if deadline - self._clock() < lease.renew / 2:
            log.warning("drains: the database is slow (the renewal took %.1f s); claiming no "
                        "drains this pass", self._clock() - now)
            return
        try:
            async with asyncio.timeout(deadline - self._clock()):
                claimed = await self._store.drains.claim(self.node_id, now, lease.ttl,
                                                         limit=CLAIM_BATCH)
        except (errors.StoreError, TimeoutError) as exc:
            log.warning("drains: cannot claim drains: %s", str(exc) or "no answer in time")
            return
        for drain in claimed:
            await self._begin(drain, deadline)

    def _held(self) -> list[HeldLease]:
        """This node's leases in the order claims take rows (created_at, id), so that a
        renewal and another node's claim never lock two drains in opposite orders."""
        running = sorted(self._running.items(),
                         key=lambda item: (item[1].delivery.drain.created_at, item[0]))
        return [HeldLease(drain_id, r.delivery.drain.lease_epoch, r.delivery.cursor,
                          r.base.plus(r.delivery.stats()))
                for drain_id, r in running]

    async def _begin(self, drain: Drain, deadline: float) -> None:
        try:
            target = parse(drain.url)
        except BadDrainUrl as exc:  # stored by an older dynomesh with other rules
            log.warning("drains: drain %s of %s cannot be delivered: %s", drain.token,
                        drain.app, exc)
            return
        settings = self.settings.delivery
        transport = transport_for(target, drain.token, self._tls, timeout=settings.timeout)
        delivery = DrainDelivery(drain, transport, settings, clock=self._clock,
                                 on_notice=lambda notice: self._notice(drain, notice),
                                 rng=self._rng, attempted=self.progress)
        self._hub.add(delivery)
        try:
            async with asyncio.timeout(max(deadline - self._clock(), 0.0)):
                entries, head = await self._store.logs.after(drain.app_id, drain.cursor)
        except (errors.StoreError, TimeoutError) as exc:
            self._hub.remove(delivery)
            log.warning("drains: cannot read %s's lines for drain %s: %s; its lease runs out "
                        "and it is claimed again", drain.app, drain.token,
                        str(exc) or "no answer in time")
            return
        delivery.catch_up(entries)
        self._hub.start(delivery, head)
        task = asyncio.create_task(delivery.run(), name=f"drain {drain.token}")
        self._running[drain.id] = _Running(delivery, task, drain.stats)
        log.info("drains: node %s delivers %s's drain %s from line %d", self.node_id,
                 drain.app, drain.token, drain.cursor + 1)

    def _notice(self, drain: Drain, notice: LogEntry) -> None:
        """An L10 went to the drain; the app's stream says so too (this drain skips it)."""
        self._applog.write(drain.app, f"{notice.text} (drain {drain.token})", process="logs")

    async def _stop(self, drain_id: str) -> None:
        running = self._running.pop(drain_id)
        await self._end(running)

    async def _end(self, running: _Running) -> None:
        self._hub.remove(running.delivery)
        try:
            await cancel_and_wait(running.task)
        except Exception as exc:  # a bug in the delivery: say it; the drain is let go anyway
            log.error("drains: the delivery of %s failed: %r", running.delivery.drain.token,
                      exc, exc_info=exc)

    async def stop(self) -> None:
        """Stop every delivery and give the drains back with how far each got (a batch cut
        short here counts as not sent: the next owner sends it again)."""
        for running in list(self._running.values()):
            await self._end(running)
        held = self._held()
        self._running.clear()
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await self._store.drains.release(self.node_id, held)
        except (errors.StoreError, TimeoutError) as exc:
            log.warning("drains: could not give back this node's drains (%s); other nodes "
                        "take them when their leases run out", str(exc) or "no answer in time")
