"""The admin listener: health, readiness and Prometheus metrics, served by aiohttp.

It runs on the router's loop but never on the request path: `/metrics` reads the plain
counters the data path bumps (see metrics.py) at scrape time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from router.metrics import RouterCollector, snapshot

if TYPE_CHECKING:
    from router.server import Router


def admin_app(router: Router) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RouterCollector(router.metrics, router.gauges))
    if router.feed is not None:
        from router.feed import FeedCollector

        registry.register(FeedCollector(router.feed.figures))
    if router.log_shipper is not None:
        from dynomesh.logship import ShipCollector

        registry.register(ShipCollector("dynomesh_router", router.log_shipper.figures))

    async def healthz(request: web.Request) -> web.Response:
        """The process is up and its loop answers."""
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        """Ready once a routing table is loaded (until then every host would be a 404).

        A router that lost its feed stays ready: it keeps routing on its last table."""
        table = router.table
        feed = f"; {router.feed.status()}" if router.feed is not None else ""
        if table is None:
            return web.Response(status=503, text=f"not ready: no routing table loaded yet{feed}\n")
        return web.Response(text=f"ready: {len(table)} apps, revision {table.revision}{feed}\n")

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def counters(request: web.Request) -> web.Response:
        """The raw counters as JSON, for the --workers supervisor to merge (workers.py)."""
        data = snapshot(router.metrics, router.gauges())
        if router.feed is not None:
            data["feed"] = router.feed.figures()._asdict()
        if router.log_shipper is not None:
            data["log_ship"] = router.log_shipper.figures()._asdict()
        return web.json_response(data)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/snapshot", counters)
    return app


async def start_admin(router: Router, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve the admin app; -> (runner to clean up, bound port)."""
    runner = web.AppRunner(admin_app(router), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]
