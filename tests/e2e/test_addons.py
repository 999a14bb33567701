"""A PostgreSQL add-on through the whole platform: `dynomesh up` runs its own PostgreSQL,
`addons:create` gives an app a database as DATABASE_URL, the app (examples/notes, deployed as a
dyno) writes and reads through it, another app's role cannot get in, and `addons:destroy`
drops the database and the role and restarts the app without DATABASE_URL.

examples/notes reaches PostgreSQL through `psql`: a dyno runs the machine's python3, which has
neither asyncpg nor psycopg (slugs are not built with their requirements yet).
"""

from __future__ import annotations

import asyncio
import http.client
import re

import asyncpg
import pytest

from tests.e2e.harness import copy_example, poll, web_up

pytestmark = pytest.mark.timeout(240)


def post(platform, app: str, path: str, body: bytes) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", platform.router.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Host": platform.router.host(app)})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def admin_url(platform) -> str:
    """The admin URL of `dynomesh up`'s own add-on server, from its home."""
    password = (platform.up.home / "addons-postgres" / "admin-password").read_text().strip()
    port = platform.up.ports["pg"]
    return f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"


async def on_server(url: str, query: str, *args):
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


def test_an_app_deployed_with_a_postgresql_addon_writes_and_reads_through_database_url(
        platform, make_app, workdir):
    # `up` lists its add-on server in the block after "dynomesh is up:", which may still be on
    # its way when the platform is ready.
    platform.up.wait_for(r"add-ons +PostgreSQL", timeout=30)
    app = make_app("e2e-notes")
    other = make_app("e2e-other")
    created = platform.cli.ok("addons:create", "postgresql", "--app", app)
    name = re.search(r"Created (postgresql-[0-9a-f]{6}) as DATABASE_URL", created).group(1)
    platform.cli.ok("addons:create", "postgresql", "--app", other)
    platform.cli.ok("deploy", str(copy_example("notes", workdir)), "--app", app)
    poll(lambda: web_up(platform.api.dynos(app), 1), f"{app}'s web dyno up", timeout=60)

    assert post(platform, app, "/notes", b"buy milk") == (201, "stored by web.1\n")
    assert post(platform, app, "/notes", b"it's 'quoted'; DROP TABLE notes; --")[0] == 201
    response = platform.router.get(app, "/notes")
    assert (response.status, response.text) == (
        200, "buy milk\nit's 'quoted'; DROP TABLE notes; --\n")
    psql = platform.cli.ok("pg:psql", "--app", app, "-c", "SELECT count(*) FROM notes")
    assert re.search(r"^\s+2$", psql, re.M), psql

    url = platform.cli.ok("config:get", "DATABASE_URL", "--app", app).strip()
    other_url = platform.cli.ok("config:get", "DATABASE_URL", "--app", other).strip()
    resource = url.rsplit("/", 1)[1]
    for trespass in (other_url.rsplit("/", 1)[0] + "/" + resource,  # other's role, app's db
                     other_url.rsplit("/", 1)[0] + "/postgres"):     # the server's own db
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for "
                           "database"):
            asyncio.run(on_server(trespass, "SELECT 1"))
    with pytest.raises(asyncpg.InvalidPasswordError):  # the server wants passwords on loopback
        asyncio.run(on_server(re.sub(r":[^:@]+@", ":wrong@", url), "SELECT 1"))

    destroyed = platform.cli.ok("addons:destroy", name, "--app", app, "--confirm", app)
    assert f"Destroyed {name} on {app}" in destroyed
    admin = admin_url(platform)
    assert asyncio.run(on_server(admin, "SELECT count(*) FROM pg_database WHERE datname = $1",
                                 resource)) == 0
    assert asyncio.run(on_server(admin, "SELECT count(*) FROM pg_roles WHERE rolname = $1",
                                 resource)) == 0
    # The new release restarts the app without DATABASE_URL.
    poll(lambda: _answers_without_url(platform, app), "the app restarted without DATABASE_URL",
         timeout=60)


def _answers_without_url(platform, app: str) -> bool:
    try:
        response = platform.router.get(app, "/notes", timeout=10)
    except OSError:
        return False
    return response.status == 503 and "no DATABASE_URL" in response.text
