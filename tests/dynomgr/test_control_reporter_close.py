"""Stopping the control-plane reporter while a report is due: the dyno manager must exit.

A report falls due (a state change, a resync) in the same moment the dyno manager shuts down
and cancels its reporting task. On Python 3.11, `asyncio.wait_for` returns normally when the
cancel lands just after the awaited event was set, and the task, never told, ran on: the dyno
manager hung after `all dynos stopped; exiting` until it was killed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from dynomgr.control import ControlPlane
from dynomgr.controlreporter import ControlPlaneReporter
from dynomgr.metrics import AgentMetrics


class Log:
    def info(self, text: str) -> None:
        pass

    error = info


class WatchedControlPlane(ControlPlane):
    """Says when the reporter has its answer to a heartbeat: the reporting task then runs on,
    with no await between, to wait for its next wake-up."""

    def __init__(self, url: str) -> None:
        super().__init__((url,), "token")
        self.heartbeat_answered = asyncio.Event()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        answer = await super().call(method, path, body)
        if path.endswith("/heartbeat"):
            self.heartbeat_answered.set()
        return answer


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
            control = WatchedControlPlane(url)
            reporter = ControlPlaneReporter(control, {"address": "x"}, Log(), AgentMetrics())
            await reporter.register()
            async with asyncio.timeout(10):  # the first heartbeat; the task then waits again
                await control.heartbeat_answered.wait()
            reporter.resync()  # a report is due now
            for _ in range(turns):  # loop turns are the point: the cancel lands at each one
                await asyncio.sleep(0)
            closing = asyncio.ensure_future(reporter.aclose())
            done, _ = await asyncio.wait({closing}, timeout=5)
            if not done:
                closing.cancel()
            assert done, f"the reporter did not stop (cancelled {turns} loop turns after a report fell due)"
    finally:
        await runner.cleanup()
