"""Assembling an agent from its configuration: data dir, markers, slugs, users, reporter.

Standalone, assignments come from a file and reports go to stdout. Following the control plane
(`--control`), assignments come from its feed, and reports go both to stdout and to the control
plane, whose slug URLs are fetched with the agent's token.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

from dynomesh.ready import Readiness
from dynomesh.writer import NonBlockingWriter

from dynomgr.agent import Agent, AgentLog
from dynomgr.config import AgentConfig
from dynomgr.datadir import DataDir, DataDirError
from dynomgr.markers import MarkerError, setup_markers
from dynomgr.metrics import AgentMetrics
from dynomgr.ports import PortAllocator
from dynomgr.process import Spawner
from dynomgr.readiness import ListenWatcher
from dynomgr.reporting import FanoutReporter, StdoutReporter, drop_notice
from dynomgr.services import DynoServices
from dynomgr.slugs import SlugCache, default_fetchers
from dynomgr.sources import AssignmentSource, FileAssignmentSource
from dynomgr.stackdir import prepare_stack
from dynomgr.users import DynoUsers

# The version registered with the control plane (`PUT /vms/{vm}`).
VERSION = "0.1.0"

_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


async def run_agent(config: AgentConfig, *,
                    assignments: Path | None = None, follow=None,
                    ready: Readiness | None = None) -> int:
    """Run an agent on assignments from a file, or following the control plane (`follow`, a
    `FollowConfig`); the exit status."""
    log = AgentLog()
    users = DynoUsers(per_app=config.per_app_users)
    data_dir = DataDir(config.data_dir)
    try:
        data_dir.prepare(other_users_enter=users.per_app)
        data_dir.lock()
        agent_id = data_dir.agent_id()
        markers, why_not_cgroups = setup_markers(agent_id, config.marker)
    except (DataDirError, MarkerError) as exc:
        log.error(str(exc))
        return 2
    except OSError as exc:
        log.error(f"data dir {data_dir.root} is unusable: {exc}")
        return 2
    try:
        stack = await asyncio.to_thread(prepare_stack, data_dir.root)  # runs each python once
    except OSError as exc:
        log.error(f"cannot prepare the stack's bin directory in {data_dir.root}: {exc}")
        return 2
    log.info("stack: " + (", ".join(f"Python {i.version} ({i.path})" for i in stack.interpreters)
                          or "no Python that dyno users can run"))
    if why_not_cgroups:
        log.info(f"not using cgroups ({why_not_cgroups}); marking dynos in their environment")

    metrics = AgentMetrics()
    writer = NonBlockingWriter(1, config.log_buffer_bytes, drop_notice=drop_notice,
                               on_drop=metrics.log_lines_dropped.inc, name="dynomgr")
    await writer.start()
    control = reporter = None
    shipped: list = []  # the log shipping reporter, when following with shipping on
    if follow is not None:
        from dynomgr.control import ControlPlane
        from dynomgr.controlreporter import ControlPlaneReporter

        control = ControlPlane(follow.urls, follow.token)
        registration = {"address": config.advertise_host, "capacity_mb": follow.capacity_mb,
                        "ports": [config.ports.first, config.ports.last], "version": VERSION,
                        "stack": stack.report()}
        reporter = ControlPlaneReporter(control, registration, log, metrics,
                                        settings=follow.report)
        if follow.logs is not None:
            from dynomesh.logship import LogShipper, ShipCollector

            from dynomgr.logship import LogShipReporter

            shipper = LogShipper(follow.urls, follow.token, follow.logs, say=log.info)
            shipper.start()
            metrics.registry.register(ShipCollector("dynomgr", shipper.figures))
            shipped.append(LogShipReporter(shipper))

        def authorize(url: str):
            targets = control.slug_urls(url)
            return None if targets is None else (targets, control.auth_headers())

        slugs = SlugCache(data_dir.slugs, default_fetchers(authorize))
    else:
        slugs = SlugCache(data_dir.slugs, default_fetchers())
    stdout = StdoutReporter(writer)
    extra = {}
    if control is not None:
        from dynomgr.attach import AttachSession

        extra["attach"] = lambda url: AttachSession.open(url, control.auth_headers())
    services = DynoServices(
        config=config,
        data_dir=data_dir,
        slugs=slugs,
        users=users,
        markers=markers,
        ports=PortAllocator(config.ports),
        listen=ListenWatcher.create(config.readiness_interval),
        reporter=stdout if reporter is None else FanoutReporter(stdout, reporter, *shipped),
        metrics=metrics,
        stack=stack,
        # util-linux's setpriv drops root in the exec chain (no fork of the agent); only
        # needed when dynos run as other users.
        spawner=Spawner(shutil.which("setpriv", path=_SBIN_PATH) if users.per_app else None),
        rng=random.Random(),
        **extra,
    )
    source: AssignmentSource
    if follow is not None:
        from dynomgr.feed import FeedAssignmentSource, FollowCollector

        source = FeedAssignmentSource(follow.urls, follow.token, slugs.schemes, reporter, log,
                                      follow.feed)
        metrics.registry.register(FollowCollector(source))
    else:
        source = FileAssignmentSource(assignments, slugs.schemes)
    agent = Agent(services, source, log, ready)
    if reporter is not None:
        reporter.watch(agent.reconciler.dynos)
    return await agent.run()
