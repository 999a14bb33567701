"""Control-plane fixtures: a database on each backend, a Store, an API server, a control process."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient, TestServer

from controlplane.applog import StdoutAppLog
from controlplane.config import ControlConfig
from controlplane.node import ControlNode
from controlplane.slugstore import open_slug_store
from controlplane.store import Store, open_database
from controlplane.store.models import Role

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


# --- the API in-process, on a real loopback socket ---

def slug_bytes(files: dict[str, bytes | str]) -> bytes:
    """A .tar.gz slug holding `files` (path -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def checksum(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


HELLO_SLUG = {"Procfile": "web: python web.py\nworker: python worker.py\n",
              "web.py": "print('hi')\n", "worker.py": "print('working')\n"}


@dataclass
class Api:
    """A control node serving on loopback, one token per role; `call` returns (status, json).

    `applog` collects the app log lines the node writes (StdoutAppLog on a StringIO)."""

    client: TestClient
    store: Store
    config: ControlConfig
    node: ControlNode
    applog: io.StringIO
    tokens: dict[Role, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def vm_token(self, vm_id: str) -> str:
        if vm_id == "vm-1":
            return self.tokens[Role.DYNOMGR]
        return (await self.store.tokens.create(Role.DYNOMGR, vm_id=vm_id)).secret

    def log_lines(self) -> list[str]:
        return self.applog.getvalue().splitlines()

    def auth(self, role: Role | None = Role.USER) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    async def call(self, method: str, path: str, *, role: Role | None = Role.USER,
                   json=None, data=None, headers: dict[str, str] | None = None):
        response = await self.client.request(method, path, json=json, data=data,
                                             headers={**self.auth(role), **(headers or {})})
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, response

    async def deploy(self, app: str, files: dict[str, bytes | str] = HELLO_SLUG):
        return await deploy_with(self.call, app, files)


async def deploy_with(call, app: str, files: dict[str, bytes | str] = HELLO_SLUG):
    """Upload `files` as a slug and release it, through `call(method, path, ...)`."""
    data = slug_bytes(files)
    status, slug, _ = await call("POST", f"/apps/{app}/slugs", data=data,
                                 headers={"X-Slug-Checksum": checksum(data)})
    assert status == 201, slug
    status, release, _ = await call("POST", f"/apps/{app}/releases", json={"slug": slug["id"]})
    assert status == 201, release
    return release


@pytest.fixture
async def api_factory(tmp_path):
    """Factory: a control node in-process (store, feeds, scheduler, API) on a loopback port.

    Keyword arguments are `ControlConfig` fields; `database_url` picks the backend; `port`
    the API's port (default: any free one).
    """
    started: list[tuple[TestClient, ControlNode, StdoutAppLog, Store]] = []

    async def factory(port: int | None = None, **overrides) -> Api:
        home = tmp_path / f"home{len(started)}"
        config = ControlConfig(home=home, **overrides)
        store = await Store.open(open_database(config.database_url, home=home,
                                               history=config.change_history))
        slugs = open_slug_store(config)
        await slugs.start()
        lines = io.StringIO()
        applog = StdoutAppLog(lines)
        node = ControlNode(config, store, slugs, applog=applog)
        await node.start()
        client = TestClient(TestServer(node.web_app(), host="127.0.0.1", port=port))
        await client.start_server()
        started.append((client, node, applog, store))
        api = Api(client, store, config, node, lines)
        api.tokens[Role.USER] = (await store.tokens.create(Role.USER)).secret
        api.tokens[Role.ROUTER] = (await store.tokens.create(Role.ROUTER)).secret
        api.tokens[Role.DYNOMGR] = (await store.tokens.create(Role.DYNOMGR, vm_id="vm-1")).secret
        return api

    yield factory
    for client, node, applog, store in started:
        await node.close_feeds()
        await client.close()
        await node.stop()
        applog.close()
        await store.close()
        await node.context.slugs.close()


@pytest.fixture
async def node_factory(database_url, api_factory):
    """Like api_factory, on each backend in turn. It depends on the database first, so the
    nodes stop before their database is dropped."""
    async def factory(**overrides) -> Api:
        return await api_factory(database_url=database_url, **overrides)
    return factory


@pytest.fixture
async def api(api_factory) -> Api:
    return await api_factory()


# --- add-ons: a PostgreSQL server of their own, and an admin with a password to look for ---

ADDONS_ADMIN = "dynomesh_addons_admin"


@pytest.fixture(scope="session")
def addons_server():
    """The add-on provider's own throwaway server, apart from the store's (the docs warn
    against sharing one: every database on an add-on server must be closed to PUBLIC, and the
    store's test databases are not). It logs DDL statements, so tests can read what reached
    its log, and PUBLIC's CONNECT on its own databases is revoked, as `dynomesh up` does."""
    from onebox.postgres import lock_down
    from tests.conftest import free_port
    from tests.pgcluster import PostgresCluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.fail("no PostgreSQL server binaries (initdb, pg_ctl): install the `postgresql` "
                    "package")
    cluster = PostgresCluster(bindir, free_port(), options=("log_statement=ddl",)).start()
    try:
        asyncio.run(lock_down(cluster.url))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def addons_admin_url(addons_server):
    """An admin URL for the add-on provider: a superuser of its own whose password
    (`secrets.token_hex`) tests can look for in output that must not hold it."""
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    password = "admin-" + secrets.token_hex(12)

    async def make_admin() -> None:
        connection = await asyncpg.connect(addons_server.url)
        try:
            await connection.execute(
                f"CREATE ROLE {ADDONS_ADMIN} WITH LOGIN SUPERUSER PASSWORD '{password}'")
        finally:
            await connection.close()

    asyncio.run(make_admin())
    parts = urlsplit(addons_server.url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{ADDONS_ADMIN}:{password}@{host}",
                                     path="/postgres"))


@pytest.fixture
async def receivers():
    """Factory: a drain receiver (tests/drainreceivers.py) started on loopback, stopped at
    teardown: `await receivers(SyslogReceiver, context)`."""
    made: list = []

    async def factory(kind, *args, **kwargs):
        made.append(await kind(*args, **kwargs).start())
        return made[-1]

    yield factory
    for receiver in made:
        await receiver.stop()


@pytest.fixture
async def addons_api(node_factory, addons_admin_url):
    """A control node (its store on each backend in turn) whose add-on server is the test
    add-on server, reached as a superuser of its own."""
    from controlplane.addons.postgres import PostgresProvider

    api = await node_factory(addons_database_url=addons_admin_url)
    yield api
    provider = PostgresProvider(addons_admin_url)
    for app in await api.store.apps.list():
        for addon in await api.store.addons.list(app.id):
            await provider.deprovision(addon.resource)  # what a failed test left behind


async def create_addon(api: Api, app: str):
    """POST a postgresql add-on on `app`: -> (the add-on, the response); it must succeed."""
    status, body, response = await api.call("POST", f"/apps/{app}/addons",
                                            json={"kind": "postgresql"})
    assert status in (200, 201), body
    return body, response


async def addon_url(api: Api, app: str) -> str:
    """The app's DATABASE_URL, whole (the add-on itself shows it masked)."""
    _, config, _ = await api.call("GET", f"/apps/{app}/config-vars")
    return config["DATABASE_URL"]


async def apps_with_addons(api: Api, *apps: str) -> list[tuple[dict, str]]:
    """Each app made, with a postgresql add-on: -> [(the add-on, its DATABASE_URL)]."""
    made = []
    for app in apps:
        await api.call("POST", "/apps", json={"name": app})
        addon, _ = await create_addon(api, app)
        made.append((addon, await addon_url(api, app)))
    return made


async def server_has(admin_url: str, resource: str) -> tuple[bool, bool]:
    """(a database named `resource` exists, a role named `resource` exists)."""
    import asyncpg

    connection = await asyncpg.connect(admin_url)
    try:
        database = await connection.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = $1", resource)
        role = await connection.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1",
                                         resource)
    finally:
        await connection.close()
    return bool(database), bool(role)
