"""What every handler needs, injected once into the aiohttp application."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from controlplane.addons.service import AddonService
from controlplane.applog import AppLog
from controlplane.attach import Rendezvous
from controlplane.builds.service import BuildService
from controlplane.certs.service import CertificateService
from controlplane.config import ControlConfig
from controlplane.drains.service import DrainService
from controlplane.feeds.hub import AssignmentHub, RouteHub
from controlplane.feeds.progress import RouteFollowers
from controlplane.logs import LogService
from controlplane.slugstore import SlugStore
from controlplane.store import Store


@dataclass(frozen=True)
class ApiContext:
    config: ControlConfig
    store: Store
    slugs: SlugStore
    routes: RouteHub
    assignments: AssignmentHub
    followers: RouteFollowers
    applog: AppLog
    node_id: str
    leading: asyncio.Event  # set while this node runs the scheduler
    logs: LogService
    addons: AddonService
    drains: DrainService
    rendezvous: Rendezvous  # attached one-off dynos' sessions waiting for their other end
    builds: BuildService
    certs: CertificateService | None = None  # apps' TLS certificates (certs:*)


CONTEXT = web.AppKey("context", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
