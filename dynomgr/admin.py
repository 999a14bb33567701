"""Admin HTTP endpoints (loopback by default): /healthz, /metrics and /dynos.

Following the control plane, /healthz also says whether the agent follows its assignment feed,
how long ago it last heard from it, and whether its reports get through (`control`).
"""

from __future__ import annotations

import socket
from typing import Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dynomgr.dyno import Dyno
from dynomgr.metrics import AgentMetrics
from dynomgr.state import DynoState


class AdminServer:
    def __init__(
        self,
        metrics: AgentMetrics,
        dynos: Callable[[], Iterable[Dyno]],
        draining: Callable[[], bool],
        control: Callable[[], dict | None] = lambda: None,
    ) -> None:
        self._metrics = metrics
        self._dynos = dynos
        self._draining = draining
        self._control = control
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/dynos", self._dynos_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            await self._runner.cleanup()
            raise
        self.address = sock.getsockname()[:2]  # the real port when asked for port 0
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        states = {state.value: 0 for state in DynoState}
        for dyno in self._dynos():
            states[dyno.state.value] += 1
        draining = self._draining()
        body = {"status": "draining" if draining else "ok", "dynos": states}
        control = self._control()
        if control is not None:
            body["control"] = control
        return web.json_response(body, status=503 if draining else 200)

    async def _metrics_page(self, request: web.Request) -> web.Response:
        payload = generate_latest(self._metrics.registry)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _dynos_page(self, request: web.Request) -> web.Response:
        rows = [
            {
                "id": d.ref.id,
                "app": d.app,
                "name": d.name,
                "type": d.ref.type,
                "release": d.ref.release,
                "state": d.state.value,
                "since": d.since,
                "address": d.address,
                "pid": d.pid,
                "restarts": d.restarts,
                "memory_bytes": d.memory_bytes,
                "memory_quota_bytes": d.memory_quota_bytes,
            }
            for d in sorted(self._dynos(), key=lambda d: (d.app, d.name))
        ]
        return web.json_response({"dynos": rows})
