"""Control-plane fixtures: a database on each backend, a Store, an API server, a control process."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.store import Store, open_database

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'control.db'}"
        return
    from urllib.parse import urlsplit, urlunsplit

    from tests.pgcluster import create_database, drop_database

    server = request.getfixturevalue("postgres_server_url")
    name = asyncio.run(create_database(server))
    yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    asyncio.run(drop_database(server, name))


@pytest.fixture
async def open_store(database_url, tmp_path):
    """Factory: open (or reopen) a Store on this test's database; all are closed at teardown."""
    opened: list[Store] = []

    async def factory(**kwargs) -> Store:
        store = await Store.open(open_database(database_url, home=tmp_path, **kwargs))
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()  # closing twice is harmless; a test may have closed it already


@pytest.fixture
async def store(open_store) -> Store:
    return await open_store()
