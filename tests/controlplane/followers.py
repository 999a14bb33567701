"""Test clients that speak docs/feeds.md over plain HTTP: feed followers and a dyno manager.

    routes = await Follower.open(api.url, "/feeds/routes", token)
    await routes.until(lambda f: f.entries["hello"]["state"] == "running")
    agent = DynoManager(api.url, "vm-1", token); await agent.register()
    await agent.report(dyno_id, "up", address="127.0.0.1:20001")

A follower applies snapshots and deltas exactly as a router or a dyno manager would and keeps
every message it got (with the time it arrived), so tests wait for a state, never for time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

FEED_TIMEOUT = 20.0  # generous: two shared cores under a parallel test load
_arrivals = itertools.count()


class Follower:
    """One feed response, read in the background and applied as its client would.

    Reading starts at once and goes on until `close()`, so when two followers run side by
    side their `arrivals` show the order in which lines really arrived.
    """

    def __init__(self, session: aiohttp.ClientSession, response: aiohttp.ClientResponse,
                 key: str) -> None:
        self._session = session
        self.response = response
        self._key = key  # "apps" (keyed by name) or "dynos" (keyed by id)
        self.entries: dict[str, dict[str, Any]] = {}
        self.revision = 0
        self.messages: list[dict[str, Any]] = []
        self.arrivals: list[int] = []  # a global arrival order across followers
        self.ended: BaseException | None = None
        self._consumed = 0
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, path: str, token: str, *, since: int | None = None,
                   **query: str) -> "Follower":
        session = aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"})
        params = dict(query)
        if since is not None:
            params["since"] = str(since)
        response = await session.get(path, params=params,
                                     timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        if response.status != 200:
            body = await response.text()
            await session.close()
            raise AssertionError(f"GET {path}: {response.status} {body}")
        return cls(session, response, "apps" if "routes" in path else "dynos")

    async def _read(self) -> None:
        try:
            while line := await self.response.content.readline():
                message = json.loads(line)
                async with self._changed:
                    self._apply(message)
                    self.messages.append(message)
                    self.arrivals.append(next(_arrivals))
                    self._changed.notify_all()
            self.ended = EOFError("the feed response ended")
        except (aiohttp.ClientError, AssertionError, ValueError) as exc:
            self.ended = exc
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        self._reader.cancel()
        self.response.close()
        await self._session.close()

    async def __aenter__(self) -> "Follower":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _apply(self, message: dict[str, Any]) -> None:
        name = "name" if self._key == "apps" else "id"
        assert message["revision"] >= self.revision, (message, self.revision)
        if message["type"] == "snapshot":
            self.entries = {e[name]: e for e in message[self._key]}
        elif message["type"] == "delta":
            for entry in message[self._key]:
                self.entries[entry[name]] = entry
            for key in message["removed"]:
                self.entries.pop(key, None)
        else:
            assert message["type"] == "heartbeat", message
        self.revision = message["revision"]

    async def until(self, predicate: Callable[["Follower"], bool],
                    timeout: float = FEED_TIMEOUT) -> "Follower":
        """Wait until `predicate(self)` holds for what has been applied."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(
                    lambda: predicate(self) or self.ended is not None), timeout)
            except TimeoutError:
                raise AssertionError(f"not seen in {timeout}s; got {self.messages[-5:]}") \
                    from None
            if not predicate(self):
                raise AssertionError(f"the feed ended ({self.ended!r}) before the state "
                                     "was seen")
        return self

    async def next(self, timeout: float = FEED_TIMEOUT) -> dict[str, Any]:
        """The next message not returned by `next` before."""
        wanted = self._consumed + 1
        await self.until(lambda f: len(f.messages) >= wanted, timeout)
        self._consumed = wanted
        return self.messages[wanted - 1]

    def by_name(self, app: str, name: str) -> list[dict[str, Any]]:
        """Assignment entries of `app` named `name` (two during a preboot)."""
        return [e for e in self.entries.values() if e["app"] == app and e["name"] == name]

    def arrival_of(self, predicate: Callable[[dict[str, Any]], bool]) -> int:
        for message, order in zip(self.messages, self.arrivals):
            if predicate(message):
                return order
        raise AssertionError("no such message arrived")


def route_names(follower: Follower, app: str) -> list[str]:
    return [d["name"] for d in follower.entries.get(app, {}).get("dynos", [])]


class DynoManager:
    """Reports for one VM as its dyno manager would (docs/feeds.md, "Reports")."""

    def __init__(self, url: str, vm_id: str, token: str, *, address: str = "127.0.0.1") -> None:
        self.url = url
        self.vm_id = vm_id
        self.address = address
        self._session = aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"})
        self._ports = itertools.count(20000)
        self._last = 0.0

    async def close(self) -> None:
        await self._session.close()

    def since(self) -> float:
        # The agent's clock only moves forward, even for two reports in one microsecond.
        self._last = max(time.time(), self._last + 0.001)
        return self._last

    async def call(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        async with self._session.request(method, path, json=body) as response:
            return response.status, await response.json()

    async def register(self, capacity_mb: int = 8192, ports=(20000, 29999)) -> dict:
        status, body = await self.call("PUT", f"/vms/{self.vm_id}", {
            "address": self.address, "capacity_mb": capacity_mb, "ports": list(ports),
            "version": "test"})
        assert status == 200, body
        return body

    def observed(self, entry: dict, state: str, **fields: Any) -> dict:
        address = fields.pop("address", None)
        if state in ("starting", "up") and entry["type"] == "web" and address is None:
            address = f"{self.address}:{next(self._ports)}"
        return {"id": entry["id"], "app": entry["app"], "name": entry["name"],
                "release": entry["release"], "state": state, "address": address,
                "since": self.since(), "restarts": 0, "reason": None, "error_code": None,
                **fields}

    async def report(self, *changes: dict) -> dict:
        status, body = await self.call("POST", f"/vms/{self.vm_id}/states",
                                       {"changes": list(changes)})
        assert status == 200, body
        return body

    async def up(self, *entries: dict) -> dict:
        """Report each assigned dyno starting, then up (web dynos with an address)."""
        changes = []
        for entry in entries:
            starting = self.observed(entry, "starting")
            changes += [starting, self.observed(entry, "up", address=starting["address"])]
        return await self.report(*changes)

    async def heartbeat(self, *observed: dict) -> dict:
        status, body = await self.call("POST", f"/vms/{self.vm_id}/heartbeat",
                                       {"dynos": list(observed)})
        assert status == 200, body
        return body
