"""The shared services every dyno uses, bundled so a `Dyno` takes one argument, not twelve."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping

from dynomgr.attach import AttachFailed, AttachSession
from dynomgr.config import AgentConfig
from dynomgr.datadir import DataDir
from dynomgr.events import Reporter
from dynomgr.markers import Markers
from dynomgr.metrics import AgentMetrics
from dynomgr.ports import PortAllocator
from dynomgr.process import Spawner
from dynomgr.readiness import ListenWatcher
from dynomgr.slugs import SlugCache
from dynomgr.stackdir import DynoStack
from dynomgr.users import DynoUsers


async def _no_sessions(url: str) -> AttachSession:
    raise AttachFailed("this dyno manager follows no control plane, so it cannot attach a "
                       "one-off dyno's session")


@dataclass
class DynoServices:
    config: AgentConfig
    data_dir: DataDir
    slugs: SlugCache
    users: DynoUsers
    markers: Markers
    ports: PortAllocator
    listen: ListenWatcher
    reporter: Reporter
    metrics: AgentMetrics
    # PATH and LANG for dynos and the interpreters this VM offers (never the agent's PATH).
    stack: DynoStack = field(default_factory=lambda: DynoStack((), None, ("/usr/bin", "/bin")))
    spawner: Spawner = field(default_factory=lambda: Spawner(None))
    clock: Callable[[], float] = time.monotonic
    wallclock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    # Joins an attached one-off dyno's session at a URL (with the agent's token); standalone
    # agents have no control plane to join.
    attach: Callable[[str], Awaitable[AttachSession]] = _no_sessions
    # One-off dynos (by id) a crashed predecessor had launched: they ran, and are not run again.
    interrupted_one_offs: set[str] = field(default_factory=set)
