"""A scripted control plane for the followers' tests: docs/feeds.md spoken exactly, on its own
thread and event loop (so tests that block on a subprocess's output cannot stall it).

It keeps the global revision, the route entries and one VM's assignments, and the history of
changes. A feed request without `since`, or with a `since` older than the kept history, gets a
snapshot; otherwise the missing deltas, one per revision; then deltas as changes happen and a
heartbeat every `heartbeat` seconds. The test scripts what a real control plane would do
(`set_route`, `assign`, ...) and the ways it can fail: dropping every feed connection, going
silent, forgetting its history, refusing a token, going away entirely and coming back on the
same port. Every request is recorded for assertions.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

from tests.conftest import free_port

TOKEN = "dmt_" + "t" * 43
ROUTER_TOKEN = "dmt_" + "r" * 43
_CLOSE = object()  # tells a feed connection to cut itself off


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    at: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class FeedConnection:
    feed: str  # "routes" or "assignments"
    since: int | None
    sent: list[dict] = field(default_factory=list)  # every message written, in order
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class ScriptedControlPlane:
    def __init__(self, *, vm_id: str = "vm-1", heartbeat: float = 0.2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.vm_id = vm_id
        self.heartbeat = heartbeat
        self.tokens = {TOKEN: ("dynomgr", vm_id), ROUTER_TOKEN: ("router", None)}
        self.revision = 40
        self.routes: dict[str, dict] = {}
        self.assignments: dict[str, dict] = {}
        self.slugs: dict[str, bytes] = {}
        # (revision, feed, changed entries, removed keys); `since` below the floor -> snapshot.
        self.history: list[tuple[int, str, list[dict], list[str]]] = []
        self.floor = self.revision
        self.requests: list[Recorded] = []
        self.log_lines: list[tuple[str, str]] = []  # (app, line) from POST /logs, as received
        self.connections: list[FeedConnection] = []
        self.silent = False  # no heartbeats (the connection stays open, says nothing)
        self.forget_vm = False  # answer reports with 404 until the VM registers again
        self._open: set[FeedConnection] = set()
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    # -- life cycle (called from the test's thread) ------------------------------------------

    def start(self) -> ScriptedControlPlane:
        self._thread.start()
        self._run(self._serve())
        return self

    def close(self) -> None:
        if self._runner is not None:
            self._run(self._go_away())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def go_away(self) -> None:
        """Stop answering: feeds cut, the port closed (connections are refused)."""
        self._run(self._go_away())

    def come_back(self) -> None:
        """Listen again on the same port, with the same state."""
        self._run(self._serve())

    def _run(self, coroutine, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _call(self, function: Callable, *args):
        async def call():
            return function(*args)
        return self._run(call())

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/feeds/routes", self._route_feed)
        app.router.add_get("/feeds/assignments", self._assignment_feed)
        app.router.add_get("/account", self._account)
        app.router.add_put("/vms/{vm}", self._register)
        app.router.add_post("/vms/{vm}/heartbeat", self._report)
        app.router.add_post("/vms/{vm}/states", self._report)
        app.router.add_get("/slugs/{slug}/download", self._slug)
        app.router.add_post("/logs", self._logs)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _go_away(self) -> None:
        for connection in list(self._open):
            connection.queue.put_nowait(_CLOSE)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- scripting what the control plane decides --------------------------------------------

    def set_route(self, entry: dict) -> int:
        """A route entry (docs/routes-format.md) is new or changed; -> its revision."""
        return self._call(self._change, "routes", [entry], [])

    def remove_route(self, name: str) -> int:
        return self._call(self._change, "routes", [], [name])

    def assign(self, *entries: dict) -> int:
        """Assignments (docs/assignments-format.md, with `id`) are new or changed."""
        return self._call(self._change, "assignments", list(entries), [])

    def unassign(self, *ids: str) -> int:
        return self._call(self._change, "assignments", [], list(ids))

    def change(self, routes: list[dict] = (), removed_routes: list[str] = (),
               assignments: list[dict] = (), removed_assignments: list[str] = ()) -> int:
        """Several changes in one transaction: one revision, one line per feed."""
        def both():
            self.revision += 1
            for feed, entries, removed in (("routes", routes, removed_routes),
                                           ("assignments", assignments, removed_assignments)):
                if entries or removed:
                    self._record(feed, list(entries), list(removed))
            return self.revision
        return self._call(both)

    def _change(self, feed: str, entries: list[dict], removed: list[str]) -> int:
        self.revision += 1
        self._record(feed, entries, removed)
        return self.revision

    def _record(self, feed: str, entries: list[dict], removed: list[str]) -> None:
        store = self.routes if feed == "routes" else self.assignments
        key = "name" if feed == "routes" else "id"
        for entry in entries:
            store[entry[key]] = entry
        for name in removed:
            store.pop(name, None)
        self.history.append((self.revision, feed, entries, removed))
        message = self._delta(feed, entries, removed, self.revision)
        for connection in list(self._open):
            if connection.feed == feed:
                connection.queue.put_nowait(message)

    def add_slug(self, slug_id: str, data: bytes) -> str:
        self.slugs[slug_id] = data
        return f"{self.url}/slugs/{slug_id}/download"

    def drop_feeds(self) -> None:
        """Cut every open feed connection (as a crashing control plane or a proxy would)."""
        def drop():
            for connection in list(self._open):
                connection.queue.put_nowait(_CLOSE)
        self._call(drop)

    def expire_history(self) -> None:
        """Forget every delta: any `since` from now on gets a snapshot."""
        def expire():
            self.history.clear()
            self.floor = self.revision
        self._call(expire)

    def send_raw(self, feed: str, line: str) -> None:
        """Write one line as it is to every open connection of `feed` (a broken message)."""
        def send():
            for connection in list(self._open):
                if connection.feed == feed:
                    connection.queue.put_nowait(line)
        self._call(send)

    def set_silent(self, silent: bool) -> None:
        self._call(setattr, self, "silent", silent)

    # -- what the test observes ---------------------------------------------------------------

    def recorded(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self._changed:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or r.path == path)]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "it"):
        """Block until `predicate()` (run under the lock, on recorded state) is truthy."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = predicate()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self._changed.wait(left)

    async def wait_for_async(self, predicate: Callable[[], Any], timeout: float = 30.0,
                             what: str = "it"):
        """`wait_for` for tests running an event loop of their own."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout, what)

    def feed_connections(self, feed: str) -> list[FeedConnection]:
        with self._changed:
            return [c for c in self.connections if c.feed == feed]

    def _note(self, recorded: Recorded | None = None) -> None:
        with self._changed:
            if recorded is not None:
                self.requests.append(recorded)
            self._changed.notify_all()

    # -- the endpoints ------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> tuple[str, str | None] | None:
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        return self.tokens.get(secret) if scheme.lower() == "bearer" else None

    @staticmethod
    def _refuse() -> web.Response:
        return web.json_response({"id": "unauthorized", "message": "the token is not valid"},
                                 status=401)

    async def _route_feed(self, request: web.Request) -> web.StreamResponse:
        return await self._feed(request, "routes")

    async def _assignment_feed(self, request: web.Request) -> web.StreamResponse:
        return await self._feed(request, "assignments")

    async def _feed(self, request: web.Request, feed: str) -> web.StreamResponse:
        since_text = request.query.get("since")
        self._note(Recorded("GET", request.path, dict(request.query)))
        if self._caller(request) is None:
            return self._refuse()
        since = int(since_text) if since_text is not None else None
        connection = FeedConnection(feed, since)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        with self._changed:
            self.connections.append(connection)
        self._open.add(connection)
        try:
            if since is None or since < self.floor:
                await self._send(response, connection, self._snapshot(feed))
            else:
                for revision, kind, entries, removed in self.history:
                    if kind == feed and revision > since:
                        await self._send(response, connection,
                                         self._delta(feed, entries, removed, revision))
            while True:
                try:
                    message = await asyncio.wait_for(connection.queue.get(), self.heartbeat)
                except asyncio.TimeoutError:
                    if self.silent:
                        continue
                    message = {"type": "heartbeat", "revision": self.revision}
                if message is _CLOSE:
                    if request.transport is not None:
                        request.transport.close()
                    return response
                await self._send(response, connection, message)
        except (ConnectionError, asyncio.CancelledError):
            return response  # the client went away, or the server is stopping
        finally:
            self._open.discard(connection)

    async def _send(self, response: web.StreamResponse, connection: FeedConnection,
                    message: dict | str) -> None:
        line = message if isinstance(message, str) else json.dumps(message)
        with self._changed:  # noted first: the client may act on it before write() returns
            connection.sent.append(message)
            self._changed.notify_all()
        await response.write(line.encode() + b"\n")

    def _snapshot(self, feed: str) -> dict:
        if feed == "routes":
            return {"type": "snapshot", "revision": self.revision, "apps": list(self.routes.values())}
        return {"type": "snapshot", "revision": self.revision, "dynos": list(self.assignments.values())}

    @staticmethod
    def _delta(feed: str, entries: list[dict], removed: list[str], revision: int) -> dict:
        key = "apps" if feed == "routes" else "dynos"
        return {"type": "delta", "revision": revision, key: entries, "removed": removed}

    async def _account(self, request: web.Request) -> web.Response:
        self._note(Recorded("GET", request.path, {}))
        caller = self._caller(request)
        if caller is None:
            return self._refuse()
        role, vm_id = caller
        return web.json_response({"id": "t-1", "role": role, "vm_id": vm_id, "description": "",
                                  "created_at": "2026-11-26T12:00:00Z"})

    async def _register(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._note(Recorded("PUT", request.path, {}, body))
        if self._caller(request) is None:
            return self._refuse()
        self.forget_vm = False
        return web.json_response({"id": request.match_info["vm"], **body})

    async def _report(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._note(Recorded("POST", request.path, {}, body))
        if self._caller(request) is None:
            return self._refuse()
        if self.forget_vm:
            return web.json_response({"id": "not_found", "message": "no such VM"}, status=404)
        return web.json_response({"ok": True})

    async def _logs(self, request: web.Request) -> web.Response:
        """Log lines (docs/logs.md): kept in `log_lines`, not in `requests`."""
        if self._caller(request) is None:
            return self._refuse()
        app, lines = None, []
        for line in (await request.text()).splitlines():
            if line.startswith("@"):
                app = line[1:]
            elif line:
                lines.append((app, line))
        with self._changed:
            self.log_lines.extend(lines)
            self._changed.notify_all()
        return web.json_response({"accepted": len(lines), "ignored": 0, "unknown_apps": [],
                                  "rejected": 0, "errors": []})

    async def _slug(self, request: web.Request) -> web.StreamResponse:
        self._note(Recorded("GET", request.path, {}))
        if self._caller(request) is None:
            return self._refuse()
        data = self.slugs.get(request.match_info["slug"])
        if data is None:
            return web.json_response({"id": "not_found", "message": "no such slug"}, status=404)
        return web.Response(body=data, content_type="application/gzip")
