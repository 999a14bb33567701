"""What every handler needs, injected once into the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from controlplane.config import ControlConfig
from controlplane.slugstore import SlugStorage
from controlplane.store import Store


@dataclass(frozen=True)
class ApiContext:
    config: ControlConfig
    store: Store
    slugs: SlugStorage


CONTEXT = web.AppKey("context", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
