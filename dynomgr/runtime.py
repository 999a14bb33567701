"""Assembling an agent from its configuration: data dir, markers, slugs, users, reporter."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Mapping

from dynomgr.agent import Agent, AgentLog
from dynomgr.config import AgentConfig
from dynomgr.datadir import DataDir, DataDirError
from dynomgr.markers import MarkerError, setup_markers
from dynomgr.metrics import AgentMetrics
from dynomgr.ports import PortAllocator
from dynomgr.process import Spawner
from dynomgr.readiness import ListenWatcher
from dynomgr.reporting import NonBlockingWriter, StdoutReporter
from dynomgr.services import DynoServices
from dynomgr.slugs import SlugCache, default_fetchers
from dynomgr.sources import FileAssignmentSource
from dynomgr.users import DynoUsers

_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


async def run_agent(config: AgentConfig, assignments: Path, base_env: Mapping[str, str]) -> int:
    """Run a standalone agent (assignments from a file, reports to stdout); the exit status."""
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
    if why_not_cgroups:
        log.info(f"not using cgroups ({why_not_cgroups}); marking dynos in their environment")

    metrics = AgentMetrics()
    writer = NonBlockingWriter(1, config.log_buffer_bytes, on_drop=metrics.log_lines_dropped.inc)
    await writer.start()
    slugs = SlugCache(data_dir.slugs, default_fetchers())
    services = DynoServices(
        config=config,
        data_dir=data_dir,
        slugs=slugs,
        users=users,
        markers=markers,
        ports=PortAllocator(config.ports),
        listen=ListenWatcher.create(config.readiness_interval),
        reporter=StdoutReporter(writer),
        metrics=metrics,
        base_env=dict(base_env),
        # util-linux's setpriv drops root in the exec chain (no fork of the agent); only
        # needed when dynos run as other users.
        spawner=Spawner(shutil.which("setpriv", path=_SBIN_PATH) if users.per_app else None),
        rng=random.Random(),
    )
    agent = Agent(services, FileAssignmentSource(assignments, slugs.schemes), log)
    return await agent.run()
