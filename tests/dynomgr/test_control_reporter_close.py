"""Stopping the control-plane reporter while a report is due: the dyno manager must exit.

A report falls due (a state change, a resync) in the same moment the dyno manager shuts down
and cancels its reporting task. On Python 3.11, `asyncio.wait_for` returns normally when the
cancel lands just after the awaited event was set, and the task, never told, ran on: the dyno
manager hung after `all dynos stopped; exiting` until it was killed.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from dynomgr.control import ControlPlane
from dynomgr.controlreporter import ControlPlaneReporter
from dynomgr.metrics import AgentMetrics


class Log:
    def info(self, text: str) -> None:
        pass

    error = info


async def control_plane() -> tuple[web.AppRunner, str]:
    """The four calls a reporter makes, answered on loopback."""

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({})

    async def account(request: web.Request) -> web.Response:
        return web.json_response({"role": "dynomgr", "vm_id": "vm-1"})

    app = web.Application()
    app.router.add_get("/account", account)
    app.router.add_put("/vms/vm-1", ok)
    app.router.add_post("/vms/vm-1/heartbeat", ok)
    app.router.add_post("/vms/vm-1/states", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


async def test_closing_as_a_report_falls_due_returns():
    runner, url = await control_plane()
    try:
        # The cancel must land at each point of the task's wake-up in turn: right away, and
        # after each of the next few loop turns.
        for turns in range(8):
            reporter = ControlPlaneReporter(ControlPlane((url,), "token"), {"address": "x"},
                                            Log(), AgentMetrics())
            await reporter.register()
            for _ in range(50):  # let the first heartbeat go out; the task waits again
                await asyncio.sleep(0)
                if reporter.last_report_at is not None and not reporter._lock.locked():
                    break
            reporter.resync()  # a report is due now
            for _ in range(turns):
                await asyncio.sleep(0)
            closing = asyncio.ensure_future(reporter.aclose())
            done, _ = await asyncio.wait({closing}, timeout=5)
            if not done:
                closing.cancel()
            assert done, f"the reporter did not stop (cancelled {turns} loop turns after a report fell due)"
    finally:
        await runner.cleanup()
