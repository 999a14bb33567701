"""One control node: its store, the feeds it serves, its scheduler and its API, started and
stopped together (by `dynomesh control`, and by tests in-process)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable

from aiohttp import web

from dynomesh.tasks import cancel_and_wait
from controlplane.acme.manager import CertificateManager
from controlplane.addons.registry import build_registry
from controlplane.addons.service import AddonService
from controlplane.api import ApiContext, make_app
from controlplane.applog import AppLog, StreamAppLog, TeeAppLog
from controlplane.attach import Rendezvous
from controlplane.builds.service import BuildService
from controlplane.certs.service import CertificateService
from controlplane.config import ControlConfig
from controlplane.drains.buffer import BufferLimits
from controlplane.drains.delivery import DeliverySettings
from controlplane.drains.service import DrainService, DrainSettings, LeaseTimes
from controlplane.feeds.hub import AssignmentHub, RouteHub
from controlplane.feeds.progress import NodePresence, RouteFollowers
from controlplane.keyrotation import KeyRotation, rotate_keys
from controlplane.logs import LogService
from controlplane.pool.manager import PoolManager
from controlplane.pool.settings import build_provider
from controlplane.scheduler.liveness import AgentLiveness
from controlplane.scheduler.scheduler import FormationScheduler, SchedulerConfig
from controlplane.scheduler.takeout import TakeOutPolicy
from controlplane.slugstore import SlugStore
from controlplane.store import Store

log = logging.getLogger("dynomesh.control")
# At shutdown, lines already taken in get this long to be stored.
LOG_FLUSH_TIMEOUT = 5.0


def drain_settings(config: ControlConfig) -> DrainSettings:
    lease = LeaseTimes(config.drain_lease, config.drain_lease / 3)
    return DrainSettings(lease, DeliverySettings(BufferLimits(lines=config.drain_buffer)),
                         config.drain_ca_file)


def _already_failed(task: asyncio.Task, exc: BaseException) -> None:
    """A task that ended of a bug, met again while stopping: logged in full when it happened
    (`ControlNode._died`, which marked the node failed); noted here once more, briefly."""
    log.debug("control: stopping %s, which had failed: %r", task.get_name(), exc)


class ControlNode:
    def __init__(self, config: ControlConfig, store: Store, slugs: SlugStore, *,
                 applog: AppLog, node_id: str | None = None,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.store = store
        self.node_id = node_id or f"node-{uuid.uuid4().hex[:12]}"
        self.applog = applog  # as given (stdout); the node's lines also go to the log stream
        self.logs = LogService(store)
        app_log = TeeAppLog(applog, StreamAppLog(self.logs.ingest))
        self.drains = DrainService(store, self.logs.hub, app_log, self.node_id,
                                   drain_settings(config), clock=clock, rng=rng)
        history = config.change_history
        certificate_key = config.certificate_key()
        self.routes = RouteHub(store.db, base_domain=config.base_domain, history=history,
                               certificate_key=certificate_key)
        self.assignments = AssignmentHub(store.db, history=history)
        self.followers = RouteFollowers()
        self.scheduler = FormationScheduler(
            store, node_id=self.node_id, followers=self.followers, applog=app_log,
            config=SchedulerConfig(
                liveness=AgentLiveness(config.agent_timeout, config.startup_grace),
                take_out=TakeOutPolicy(config.take_out_grace, config.take_out_timeout)),
            clock=clock, rng=rng)
        # The pool loop runs beside the scheduler and only while it leads.
        self.pool = PoolManager(store, config.pool, build_provider(config.pool),
                                leading=self.scheduler.leading,
                                epoch=lambda: self.scheduler.epoch,
                                control_urls=config.pool_control_urls, clock=clock)
        self.presence = (NodePresence(store.nodes, self.node_id, self.followers,
                                      lambda: self.routes.revision, clock)
                         if store.db.shared else None)
        self.builds = BuildService(store, slugs, config.build_settings(), app_log,
                                   self.node_id, clock=clock)
        self.certs = CertificateService(store, config, certificate_key)
        # Automatic certificates: the ACME loop runs beside the scheduler, only while it leads.
        self.acme = CertificateManager(store, self.certs, certificate_key, config.acme,
                                       leading=self.scheduler.leading, followers=self.followers,
                                       node_id=self.node_id, clock=clock, rng=rng)
        self.context = ApiContext(config, store, slugs, self.routes, self.assignments,
                                  self.followers, app_log, self.node_id,
                                  self.scheduler.leading, self.logs,
                                  AddonService(store, build_registry(config.addons_database_url)),
                                   self.drains, Rendezvous(), self.builds,
                                  certs=self.certs)
        self._tasks: list[asyncio.Task] = []
        # Set when a task of this node died of a bug: a node whose feeds or scheduler stopped
        # must not keep answering as if it were healthy; `dynomesh control` exits instead.
        self.failed = asyncio.Event()

    def web_app(self) -> web.Application:
        return make_app(self.context)

    async def start(self) -> None:
        """Load the feeds' state, then follow revisions and take part in scheduling."""
        # Routers sign session affinity cookies with a key from the route feed: the first
        # start of a store makes it (controlplane/store/affinity.py).
        await self.context.store.affinity_keys.ensure()
        await self.routes.start()
        await self.assignments.start()
        await self.logs.start()
        await self.drains.start()
        await self.builds.start()
        runners = {"route-hub": self.routes.run(), "assignment-hub": self.assignments.run(),
                   "scheduler": self.scheduler.run(), "drains": self.drains.run(),
                   "pool": self.pool.run(), "acme": self.acme.run(),
                   **self.logs.runners()}
        if self.presence is not None:
            runners["presence"] = self.presence.run()
        if self.config.affinity_key_rotation > 0:
            runners["affinity-keys"] = rotate_keys(
                self.context.store.affinity_keys, KeyRotation(self.config.affinity_key_rotation))
        for name, coroutine in runners.items():
            task = asyncio.create_task(coroutine, name=name)
            task.add_done_callback(self._died)
            self._tasks.append(task)
        # Know whether this node schedules before saying it is ready (it may be taking over).
        scheduler = next(t for t in self._tasks if t.get_name() == "scheduler")
        decided = asyncio.ensure_future(self.scheduler.decided.wait())
        await asyncio.wait({decided, scheduler}, return_when=asyncio.FIRST_COMPLETED)
        decided.cancel()

    @property
    def role(self) -> str:
        return "scheduling" if self.scheduler.leading.is_set() else "standing by"

    def _died(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("control: %s stopped: %r", task.get_name(), task.exception(),
                      exc_info=task.exception())
            self.failed.set()

    async def close_feeds(self) -> None:
        """End every feed response and log tail (followers reconnect elsewhere); first step of
        a shutdown."""
        await self.routes.close()
        await self.assignments.close()
        self.logs.close_tails()

    async def stop(self) -> None:
        await self.close_feeds()
        await self.builds.close()
        if self._tasks and not await self.logs.flush(LOG_FLUSH_TIMEOUT):
            log.warning("control: log lines taken in were not all stored before stopping")
        drains = next((t for t in self._tasks if t.get_name() == "drains"), None)
        if drains is not None:
            try:
                await cancel_and_wait(drains)  # no claims while the drains are given back
            except Exception as exc:
                _already_failed(drains, exc)
            await self.drains.stop()
        for task in self._tasks:
            try:
                await cancel_and_wait(task)
            except Exception as exc:
                _already_failed(task, exc)
        self._tasks.clear()
        await self.pool.provider.close()
        if self.presence is not None:
            await self.presence.leave()
