"""Factory fixtures for router tests: scripted dynos and in-process routers on the test loop."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from dynomesh.backoff import BackoffPolicy
from dynomesh.poll import poll_until
from router.accesslog import MemorySink
from router.config import Endpoint, RouterConfig
from router.routes import parse_routes
from router.server import Router
from router.table import RouteTable
from tests.router.wire import Dyno, RawClient


def table_of(*apps: dict[str, Any], revision: int = 0) -> RouteTable:
    """A RouteTable from route-entry dicts, exactly as a routes file would give them."""
    return RouteTable.from_document(parse_routes({"revision": revision, "apps": list(apps)}))


def app_entry(name: str, hosts: list[str] | None = None, dynos: list[Dyno] = (),
              **fields: Any) -> dict[str, Any]:
    return {"name": name, "hosts": hosts or [f"{name}.localhost"],
            "dynos": [{"name": d.name, "address": d.address} for d in dynos], **fields}


class RouterUnderTest:
    """An in-process Router with its log lines kept in memory."""

    def __init__(self, router: Router, sink: MemorySink) -> None:
        self.router = router
        self.sink = sink

    @property
    def port(self) -> int:
        return self.router.port

    def install(self, table: RouteTable) -> None:
        self.router.install(table)

    async def client(self) -> RawClient:
        return await RawClient.connect(self.port)

    def log_lines(self) -> list[str]:
        self.router.log_writer.flush()
        return [line.decode("latin-1") for line in self.sink.lines]

    def log_fields(self, index: int = -1) -> dict[str, str]:
        """The logfmt fields of one router log line (default: the last one)."""
        return parse_logfmt(self.log_lines()[index].split(": ", 1)[1])


def parse_logfmt(text: str) -> dict[str, str]:
    fields, i = {}, 0
    while i < len(text):
        eq = text.index("=", i)
        key = text[i:eq]
        i = eq + 1
        if i < len(text) and text[i] == '"':
            j, value = i + 1, []
            while text[j] != '"':
                if text[j] == "\\":
                    j += 1
                value.append(text[j])
                j += 1
            fields[key] = "".join(value)
            i = j + 2
        else:
            end = text.find(" ", i)
            end = len(text) if end < 0 else end
            fields[key] = text[i:end]
            i = end + 1
    return fields


@pytest.fixture
async def dyno_factory():
    started: list[Dyno] = []

    async def make(name: str = "web.1", handler=None) -> Dyno:
        dyno = await Dyno(name, handler).start()
        started.append(dyno)
        return dyno

    yield make
    for dyno in started:
        await dyno.stop()


@pytest.fixture
async def router_factory():
    routers: list[Router] = []

    async def make(table: RouteTable | None = None, admin: bool = False,
                   **settings: Any) -> RouterUnderTest:
        config = RouterConfig(listen=Endpoint("127.0.0.1", 0),
                              admin=Endpoint("127.0.0.1", 0) if admin else None, **settings)
        sink = MemorySink()
        router = Router(config, sinks=[sink], rng=random.Random(7))
        if table is not None:
            router.install(table)
        await router.start()
        routers.append(router)
        return RouterUnderTest(router, sink)

    yield make
    for router in routers:
        await router.stop()


# A millisecond first (most conditions hold within a turn or two), growing to 50 ms.
STATE_POLL = BackoffPolicy(0.001, 0.05)


async def wait_until(predicate, timeout: float = 5.0) -> None:
    """Wait for a condition over router state that nothing announces (a counter, a table's
    revision, a log line), asked with growing pauses: asking once per loop turn would spin a
    CPU that the processes under test (a control plane, a shipper's peer) need."""
    if not await poll_until(predicate, timeout, policy=STATE_POLL):
        raise TimeoutError(f"not true after {timeout:g} s: {predicate}")


async def each_turn_until(predicate, timeout: float = 5.0) -> None:
    """`wait_until`, asking once per loop turn: for the tests where the turn is the point
    (counting the turns something takes, acting in the very turn a condition holds)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


def pytest_asyncio_loop_factories(config, item):
    """Router tests run on uvloop, the loop `dynomesh router` runs on."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}
