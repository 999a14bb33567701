"""Closed connections are freed when they close, not left for the garbage collector.

The router freezes what is alive out of garbage collection when it installs a table
(tableload.py); a connection open at that moment, kept alive by a reference cycle (its parser
holds its bound methods), would never be collected after it closed: a leak per connection on
a router that takes many snapshots.
"""

from __future__ import annotations

import gc

import pytest

from router import tableload
from router.client import ClientConnection
from router.upstream import UpstreamConnection
from tests.router.conftest import app_entry, table_of, wait_until

pytestmark = pytest.mark.functional


@pytest.fixture
def saved_garbage():
    """gc.garbage keeps what a collection found unreachable (instead of freeing it)."""
    flags = gc.get_debug()
    gc.collect()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    del gc.garbage[:]
    yield gc.garbage
    gc.set_debug(flags)
    del gc.garbage[:]
    gc.unfreeze()


async def test_connections_closed_after_a_table_freeze_are_freed_at_once(
        router_factory, dyno_factory, saved_garbage):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])), pool_max_idle=0)
    clients = [await router.client() for _ in range(20)]
    for client in clients:
        response = await client.request("GET", "/", host="app1.localhost")
        assert response.status == 200
    tableload.keep_out_of_collections()  # as a snapshot's install does, connections open
    for client in clients:
        await client.close()
    await wait_until(lambda: not router.router.clients)
    await router.router.stop()

    gc.unfreeze()
    gc.collect()
    left = [type(o).__name__ for o in saved_garbage
            if isinstance(o, (ClientConnection, UpstreamConnection))]
    assert left == []
