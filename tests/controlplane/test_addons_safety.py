"""PostgreSQL add-ons when someone pushes: an app that grants another app rights, a server
that lets every role connect to its databases, the server's own log, a rollback or config:set
over an add-on's DATABASE_URL, and creates and destroys that race each other. All against the
test add-on server (tests/controlplane/conftest.py), which wants SCRAM passwords on loopback
and logs every DDL statement."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest

from tests.controlplane.conftest import addon_url, apps_with_addons, create_addon, server_has


async def run_sql(url: str, *statements: str):
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            result = await connection.fetch(statement)
        return result
    finally:
        await connection.close()


def on_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


async def app_resources(admin_url: str, app: str) -> tuple[list[str], list[str]]:
    """(databases, roles) on the add-on server made for `app` (named app_<app>_<hex>)."""
    pattern = f"app\\_{app.replace('-', '_')}\\_%"
    connection = await asyncpg.connect(admin_url)
    try:
        databases = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1", pattern)
        roles = await connection.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY 1", pattern)
    finally:
        await connection.close()
    return [r[0] for r in databases], [r[0] for r in roles]


# --- 1: another app's grants do not make an app impossible to destroy ---------------------

async def test_an_app_another_app_granted_rights_to_is_still_destroyed(addons_api,
                                                                      addons_admin_url):
    api = addons_api
    (grantee, grantee_url), (granter, granter_url) = await apps_with_addons(api, "grantee",
                                                                            "granter")
    # The granter owns its database, so it may let the grantee in and give it rights there:
    # role names are no secret (pg_roles is readable by every role).
    mine, theirs = granter["resource"], grantee["resource"]
    await run_sql(granter_url, f"GRANT CONNECT ON DATABASE {mine} TO {theirs}",
                  f"GRANT CREATE ON SCHEMA public TO {theirs}",
                  "CREATE TABLE shared (x int)", f"GRANT SELECT ON shared TO {theirs}")
    await run_sql(on_database(grantee_url, mine), "CREATE TABLE left_by_grantee (y int)",
                  "INSERT INTO left_by_grantee VALUES (7)")

    status, body, _ = await api.call("DELETE", f"/apps/grantee/addons/{grantee['name']}")
    assert status == 200, body
    assert await server_has(addons_admin_url, theirs) == (False, False)
    assert (await api.call("GET", "/apps/grantee/addons"))[1] == []
    # The granter keeps its data, what the grantee made in it included (now the granter's).
    rows = await run_sql(granter_url, "SELECT y FROM left_by_grantee")
    assert [r["y"] for r in rows] == [7]
    status, body, _ = await api.call("DELETE", "/apps/granter")
    assert status == 200, body


# --- 2: a server where PUBLIC may connect somewhere is refused, naming the REVOKE ----------

async def test_a_server_where_every_role_may_connect_to_a_database_is_refused(
        addons_api, addons_admin_url):
    api = addons_api
    await api.call("POST", "/apps", json={"name": "kept-out"})
    await api.call("POST", "/apps", json={"name": "earlier"})
    earlier, _ = await create_addon(api, "earlier")
    await run_sql(addons_admin_url, "CREATE DATABASE operators_own",
                  "GRANT CONNECT ON DATABASE postgres TO PUBLIC")
    try:
        status, body, _ = await api.call("POST", "/apps/kept-out/addons",
                                         json={"kind": "postgresql"})
        assert (status, body["id"]) == (503, "addon_server_unsafe"), body
        assert "every role may connect to the databases operators_own, postgres" in \
            body["message"]
        assert ("REVOKE CONNECT ON DATABASE operators_own FROM PUBLIC; REVOKE CONNECT ON "
                "DATABASE postgres FROM PUBLIC;") in body["message"]
        assert (await api.call("GET", "/apps/kept-out/addons"))[1] == []
        assert (await app_resources(addons_admin_url, "kept-out")) == ([], [])
        # Destroying is still allowed: it takes access away.
        status, body, _ = await api.call("DELETE", f"/apps/earlier/addons/{earlier['name']}")
        assert status == 200, body
    finally:
        await run_sql(addons_admin_url, "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC",
                      "DROP DATABASE operators_own")
    await create_addon(api, "kept-out")


async def test_an_admin_that_is_not_a_superuser_is_refused_before_anything_is_made(
        addons_api, addons_admin_url):
    """CREATEDB and CREATEROLE are not enough: CREATE DATABASE ... OWNER an app's role fails
    for such an admin (42501), and it cannot clear what other roles granted that role."""
    from controlplane.addons import errors
    from controlplane.addons.registry import build_registry
    from controlplane.addons.service import AddonService

    api = addons_api
    await api.call("POST", "/apps", json={"name": "underpowered"})
    await run_sql(addons_admin_url,
                  "CREATE ROLE half_admin LOGIN CREATEDB CREATEROLE PASSWORD 'half-pw'",
                  "GRANT CONNECT ON DATABASE postgres TO half_admin")
    try:
        half = re.sub(r"//[^@]+@", "//half_admin:half-pw@", addons_admin_url)
        service = AddonService(api.store, build_registry(half))
        with pytest.raises(errors.UnsafeServer, match="the admin role of --addons-database-url "
                           "is not a superuser of the add-on PostgreSQL server at "):
            await service.create("underpowered", "postgresql")
    finally:
        await run_sql(addons_admin_url, "DROP OWNED BY half_admin", "DROP ROLE half_admin")
    assert await api.store.addons.list("underpowered") == []
    assert await app_resources(addons_admin_url, "underpowered") == ([], [])


# --- 3: the app's password is sent as a SCRAM verifier, never as itself --------------------

async def test_the_apps_password_never_reaches_the_servers_log_and_only_it_logs_in(
        addons_api, addons_admin_url, addons_server):
    api = addons_api
    await api.call("POST", "/apps", json={"name": "secretive"})
    addon, _ = await create_addon(api, "secretive")
    url = await addon_url(api, "secretive")
    password = re.match(r"postgresql://[^:]+:([^@]+)@", url).group(1)
    log = addons_server.log.read_text()
    assert f'CREATE ROLE "{addon["resource"]}"' in log  # DDL is logged...
    assert password not in log                          # ...but not the password
    stored = (await run_sql(addons_admin_url, "SELECT rolpassword FROM pg_authid WHERE "
                            f"rolname = '{addon['resource']}'"))[0][0]
    assert stored.startswith("SCRAM-SHA-256$4096:")
    assert (await run_sql(url, "SELECT current_user"))[0][0] == addon["resource"]
    with pytest.raises(asyncpg.InvalidPasswordError):
        await run_sql(url.replace(f":{password}@", ":not-the-password@"), "SELECT 1")


# --- 4: an add-on's config var is the add-on's ---------------------------------------------

async def test_a_rollback_keeps_the_addons_url_and_config_changes_to_it_are_refused(
        addons_api):
    api = addons_api
    await api.call("POST", "/apps", json={"name": "rolled"})
    await api.deploy("rolled")                       # v1: no DATABASE_URL
    await create_addon(api, "rolled")                # v2
    url = await addon_url(api, "rolled")
    await api.call("PATCH", "/apps/rolled/config-vars", json={"GREETING": "hi"})  # v3
    status, body, _ = await api.call("POST", "/apps/rolled/releases", json={"release": "v1"})
    assert status == 201, body
    _, config, _ = await api.call("GET", "/apps/rolled/config-vars")
    assert config == {"DATABASE_URL": url}           # GREETING rolled back, the URL kept
    current = await api.store.releases.current("rolled")
    assert (current.version, current.config) == (4, {"DATABASE_URL": url})  # what dynos run

    for change in ({"DATABASE_URL": "postgresql://elsewhere/db"}, {"DATABASE_URL": None},
                   {"GREETING": "hello", "DATABASE_URL": None}):
        status, body, _ = await api.call("PATCH", "/apps/rolled/config-vars", json=change)
        assert (status, body["id"]) == (409, "conflict"), body
        assert "DATABASE_URL belongs to the add-on postgresql-" in body["message"]
        assert "dynomesh addons:destroy postgresql-" in body["message"]
    assert (await api.call("GET", "/apps/rolled/config-vars"))[1] == {"DATABASE_URL": url}


# --- 5: creates and destroys of one add-on take turns --------------------------------------

async def test_a_create_or_destroy_while_another_node_works_on_the_addon_is_told_to_retry(
        addons_api, addons_admin_url):
    """Another control node in the middle of a create holds the add-on (its session's
    advisory lock on the add-on server); here the test's own session holds it."""
    from controlplane.addons.postgres import LOCK_CLASS
    from controlplane.addons.service import hold_key

    api = addons_api
    await api.call("POST", "/apps", json={"name": "contended"})
    started, _ = await api.store.addons.begin_create(
        "contended", kind="postgresql", name="postgresql-5ee5aa",
        resource="app_contended_5ee5aa", config_var="DATABASE_URL")
    other_node = await asyncpg.connect(addons_admin_url)
    try:
        assert await other_node.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))",
                                         LOCK_CLASS, hold_key(started.app_id, "postgresql"))
        for method, path in (("POST", "/apps/contended/addons"),
                             ("DELETE", f"/apps/contended/addons/{started.name}")):
            status, body, _ = await api.call(method, path, json={"kind": "postgresql"}
                                             if method == "POST" else None)
            assert (status, body["id"]) == (409, "addon_busy"), body
            assert body["message"] == ("contended's postgresql add-on is being created or "
                                       "destroyed by another request: run the command again "
                                       "in a moment")
        assert await server_has(addons_admin_url, started.resource) == (False, False)
    finally:
        await other_node.close()  # the other node is done (or died): its lock goes
    addon, response = await create_addon(api, "contended")
    assert (response.status, addon["name"], addon["state"]) == (200, started.name, "ready")


async def test_racing_creates_and_destroys_leave_one_working_database_or_none(
        addons_api, addons_admin_url):
    api = addons_api
    await api.call("POST", "/apps", json={"name": "racy"})
    post = lambda: api.call("POST", "/apps/racy/addons", json={"kind": "postgresql"})  # noqa
    answers = await asyncio.gather(post(), post())
    assert sorted(status for status, _, _ in answers)[0] in (200, 201), answers
    assert all(status in (200, 201, 409) for status, _, _ in answers), answers
    _, listed, _ = await api.call("GET", "/apps/racy/addons")
    assert [a["state"] for a in listed] == ["ready"]
    assert await app_resources(addons_admin_url, "racy") == ([listed[0]["resource"]],) * 2
    assert (await run_sql(await addon_url(api, "racy"), "SELECT 1"))[0][0] == 1

    name = listed[0]["name"]
    answers = await asyncio.gather(api.call("DELETE", f"/apps/racy/addons/{name}"), post())
    assert all(status in (200, 201, 404, 409) for status, _, _ in answers), answers
    _, listed, _ = await api.call("GET", "/apps/racy/addons")
    databases, roles = await app_resources(addons_admin_url, "racy")
    assert databases == roles == [a["resource"] for a in listed]  # no orphan, no ghost
    if listed:
        assert [a["state"] for a in listed] == ["ready"]
        assert (await run_sql(await addon_url(api, "racy"), "SELECT 1"))[0][0] == 1


# --- a fresh create never adopts what it did not make ----------------------------------------

async def test_a_fresh_create_refuses_a_role_or_database_it_did_not_make_and_leaves_it(
        addons_api, addons_admin_url):
    import random

    from controlplane.addons import errors, naming
    from controlplane.addons.registry import build_registry
    from controlplane.addons.service import AddonService

    api = addons_api
    await api.call("POST", "/apps", json={"name": "squatted"})
    planned = naming.derive("postgresql", "squatted", random.Random(11))
    await run_sql(addons_admin_url, f"CREATE ROLE {planned.resource} LOGIN PASSWORD 'theirs-pw'",
                  f"CREATE DATABASE {planned.resource} OWNER {planned.resource}",
                  f"REVOKE CONNECT ON DATABASE {planned.resource} FROM PUBLIC")
    theirs = on_database(addons_admin_url, planned.resource)
    await run_sql(theirs, "CREATE TABLE precious (x int)", "INSERT INTO precious VALUES (1)")
    service = AddonService(api.store, build_registry(addons_admin_url), random.Random(11))
    try:
        with pytest.raises(errors.ResourceExists, match=f"already has a role named "
                           f"{planned.resource}, which no add-on here made: it was left"):
            await service.create("squatted", "postgresql")
        assert await api.store.addons.list("squatted") == []
        assert await api.store.releases.config("squatted") == {}
        assert (await run_sql(theirs, "SELECT x FROM precious"))[0][0] == 1  # not dropped
        owner_url = on_database(re.sub(r"//[^@]+@", f"//{planned.resource}:theirs-pw@",
                                       addons_admin_url), planned.resource)
        assert (await run_sql(owner_url, "SELECT current_user"))[0][0] == planned.resource
    finally:
        await run_sql(addons_admin_url, f"DROP DATABASE {planned.resource}",
                      f"DROP ROLE {planned.resource}")
    status, body, _ = await api.call("POST", "/apps/squatted/addons",
                                     json={"kind": "postgresql"})
    assert status == 201, body  # another name, this time


# --- an add-on is finished or destroyed only on the server it lives on ---------------------

async def test_a_control_plane_given_another_addon_server_refuses_to_destroy_there(
        addons_api, addons_admin_url):
    from controlplane.addons import errors
    from controlplane.addons.registry import build_registry
    from controlplane.addons.service import AddonService
    from tests.conftest import free_port

    api = addons_api
    await api.call("POST", "/apps", json={"name": "moved"})
    addon, _ = await create_addon(api, "moved")
    here = addons_admin_url.rpartition("@")[2].split("/")[0]
    assert addon["location"] == here
    elsewhere = f"127.0.0.1:{free_port()}"
    moved = AddonService(api.store, build_registry(f"postgresql://a:pw@{elsewhere}/postgres"))
    with pytest.raises(errors.Elsewhere) as refused:
        await moved.destroy("moved", addon["name"])
    assert str(refused.value) == (
        f"{addon['name']} lives on the add-on server at {here}, but the control plane's "
        f"--addons-database-url now points at {elsewhere}: point it back at {here} to finish "
        f"or destroy {addon['name']} (its {addon['resource']} is there)")
    assert [a.state.value for a in await api.store.addons.list("moved")] == ["ready"]
    assert list(await api.store.releases.config("moved")) == ["DATABASE_URL"]
    assert await server_has(addons_admin_url, addon["resource"]) == (True, True)
