"""PostgreSQL add-ons against a real PostgreSQL server: the API makes a database and a role per
app, attaches it as DATABASE_URL with a new release, keeps apps out of each other's databases,
and destroys both; failures leave nothing the user cannot finish."""

from __future__ import annotations

import asyncio

import re

import asyncpg
import pytest

from controlplane.addons.postgres import PostgresProvider
from controlplane.store.models import AddonState
from tests.conftest import free_port
from tests.controlplane.conftest import (addon_url, apps_with_addons, create_addon as create,
                                         server_has)


async def test_create_attaches_a_database_the_app_can_write_and_read_with_a_new_release(
        addons_api, addons_admin_url):
    api = addons_api
    await api.call("POST", "/apps", json={"name": "hello-db"})
    await api.deploy("hello-db")
    addon, response = await create(api, "hello-db")
    assert response.status == 201 and response.headers["Dynomesh-Release"] == "2"
    assert addon["name"].startswith("postgresql-") and addon["state"] == "ready"
    assert addon["resource"].startswith("app_hello_db_")
    _, config, _ = await api.call("GET", "/apps/hello-db/config-vars")
    url = config["DATABASE_URL"]
    assert list(config) == ["DATABASE_URL"]
    assert url.startswith(f"postgresql://{addon['resource']}:")
    # the add-on shows its var with the password masked, as Heroku shows only its name
    assert addon["config_value_masked"] == re.sub(r":[^:@]+@", ":***@", url)
    assert ":***@" in addon["config_value_masked"]
    _, releases, _ = await api.call("GET", "/apps/hello-db/releases")
    assert (releases[0]["version"], releases[0]["description"], releases[0]["slug"] is not None) \
        == (2, "Set DATABASE_URL config vars", True)
    await asyncio.to_thread(api.node.applog.flush)  # the log is written from a thread
    assert any(f"Add-on {addon['name']} (postgresql) created by" in line
               for line in api.log_lines())

    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CREATE TABLE notes (body TEXT)")
        await connection.execute("INSERT INTO notes VALUES ('kept')")
        assert await connection.fetchval("SELECT body FROM notes") == "kept"
        assert await connection.fetchval("SELECT current_user") == addon["resource"]
        role = await connection.fetchrow(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolconnlimit "
            "FROM pg_roles WHERE rolname = current_user")
        assert tuple(role.values()) == (False, False, False, False, 20)  # as Essential-0
    finally:
        await connection.close()
    _, listed, _ = await api.call("GET", "/apps/hello-db/addons")
    assert [a["name"] for a in listed] == [addon["name"]]


async def test_one_apps_role_cannot_connect_to_another_apps_database(addons_api,
                                                                     addons_admin_url):
    (alpha, alpha_url), (beta, beta_url) = await apps_with_addons(addons_api, "alpha", "beta")
    # alpha's role and password, beta's database
    trespass = alpha_url.rsplit("/", 1)[0] + "/" + beta["resource"]
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await asyncpg.connect(trespass)
    assert refused.value.sqlstate == "42501"
    assert f'permission denied for database "{beta["resource"]}"' in str(refused.value)
    assert "CONNECT privilege" in refused.value.detail
    admin = await asyncpg.connect(addons_admin_url)
    try:
        may = await admin.fetchval("SELECT has_database_privilege($1, $2, 'CONNECT')",
                                   alpha["resource"], beta["resource"])
        public_create = await admin.fetchval(
            "SELECT has_database_privilege('public', $1, 'CONNECT')", beta["resource"])
    finally:
        await admin.close()
    assert (may, public_create) == (False, False)
    beta_own = await asyncpg.connect(beta_url)
    try:  # PUBLIC may not create in beta's public schema; beta's role may
        assert await beta_own.fetchval(
            "SELECT has_schema_privilege('public', 'public', 'CREATE')") is False
        await beta_own.execute("CREATE TABLE mine (x int)")
    finally:
        await beta_own.close()


async def test_destroy_drops_the_database_and_role_and_unsets_the_url(addons_api,
                                                                     addons_admin_url):
    api = addons_api
    await api.call("POST", "/apps", json={"name": "gone"})
    addon, _ = await create(api, "gone")
    assert await server_has(addons_admin_url, addon["resource"]) == (True, True)
    session = await asyncpg.connect(await addon_url(api, "gone"))  # a dyno still connected
    try:
        status, body, response = await api.call("DELETE", f"/apps/gone/addons/{addon['name']}")
    finally:
        await session.close()
    assert status == 200, body
    assert response.headers["Dynomesh-Release"] == "2"
    assert await server_has(addons_admin_url, addon["resource"]) == (False, False)
    _, config, _ = await api.call("GET", "/apps/gone/config-vars")
    assert config == {}
    _, releases, _ = await api.call("GET", "/apps/gone/releases")
    assert releases[0]["description"] == "Remove DATABASE_URL config vars"
    assert (await api.call("GET", "/apps/gone/addons"))[1] == []
    status, body, _ = await api.call("DELETE", f"/apps/gone/addons/{addon['name']}")
    assert status == 404 and "`dynomesh addons --app gone` lists" in body["message"]


async def test_destroying_the_app_destroys_its_addons(addons_api, addons_admin_url):
    api = addons_api
    await api.call("POST", "/apps", json={"name": "whole"})
    addon, _ = await create(api, "whole")
    status, body, _ = await api.call("DELETE", "/apps/whole")
    assert status == 200, body
    assert await server_has(addons_admin_url, addon["resource"]) == (False, False)


async def test_a_second_addon_of_a_kind_and_an_unknown_kind_are_refused(addons_api):
    api = addons_api
    await api.call("POST", "/apps", json={"name": "twice"})
    addon, _ = await create(api, "twice")
    status, body, _ = await api.call("POST", "/apps/twice/addons", json={"kind": "postgresql"})
    assert (status, body["id"]) == (409, "conflict")
    assert f"twice already has a postgresql add-on ({addon['name']}" in body["message"]
    assert "addons:destroy" in body["message"]
    status, body, _ = await api.call("POST", "/apps/twice/addons", json={"kind": "redis"})
    assert (status, body["id"]) == (422, "unknown_addon_kind")
    assert "the kinds are postgresql" in body["message"]


async def test_an_app_with_its_own_database_url_is_not_overwritten(addons_api):
    api = addons_api
    await api.call("POST", "/apps", json={"name": "ownurl"})
    await api.call("PATCH", "/apps/ownurl/config-vars",
                   json={"DATABASE_URL": "postgresql://elsewhere/db"})
    status, body, _ = await api.call("POST", "/apps/ownurl/addons", json={"kind": "postgresql"})
    assert status == 409 and "config:unset DATABASE_URL --app ownurl" in body["message"]
    assert (await api.call("GET", "/apps/ownurl/addons"))[1] == []


async def test_an_unreachable_server_is_named_and_nothing_is_recorded(api_factory):
    port = free_port()  # nothing listens there
    api = await api_factory(
        addons_database_url=f"postgresql://admin:hunter2-admin@127.0.0.1:{port}/postgres")
    await api.call("POST", "/apps", json={"name": "nodb"})
    status, body, response = await api.call("POST", "/apps/nodb/addons",
                                            json={"kind": "postgresql"})
    assert (status, body["id"]) == (503, "addon_server_unavailable")
    assert body["message"].startswith(
        f"cannot reach the add-on PostgreSQL server at 127.0.0.1:{port} (")
    assert "--addons-database-url" in body["message"] and "run the command again" in \
        body["message"]
    assert "hunter2" not in body["message"] and "admin" not in body["message"]
    assert response.headers["Retry-After"]
    assert (await api.call("GET", "/apps/nodb/addons"))[1] == []
    assert (await api.call("GET", "/apps/nodb/config-vars"))[1] == {}


async def test_a_platform_without_an_addon_server_says_how_to_give_it_one(api):
    await api.call("POST", "/apps", json={"name": "plain"})
    status, body, _ = await api.call("POST", "/apps/plain/addons", json={"kind": "postgresql"})
    assert (status, body["id"]) == (422, "addons_not_configured")
    assert "--addons-database-url postgresql://" in body["message"]
    assert "dynomesh up" in body["message"]


async def test_a_create_interrupted_after_the_database_was_made_is_finished_by_running_it_again(
        addons_api, addons_admin_url):
    """What a control plane killed between the provider's work and the store's last step
    leaves: the row `provisioning`, the database and role made, no DATABASE_URL."""
    api = addons_api
    await api.call("POST", "/apps", json={"name": "crashy"})
    started, _ = await api.store.addons.begin_create(
        "crashy", kind="postgresql", name="postgresql-c0ffee", resource="app_crashy_c0ffee",
        config_var="DATABASE_URL")
    await PostgresProvider(addons_admin_url).provision(started.resource, fresh=True)  # crash
    _, listed, _ = await api.call("GET", "/apps/crashy/addons")
    assert [(a["name"], a["state"], a["config_value_masked"]) for a in listed] == \
        [("postgresql-c0ffee", "provisioning", None)]

    addon, response = await create(api, "crashy")
    assert response.status == 200  # finished, not made anew
    assert (addon["name"], addon["state"]) == ("postgresql-c0ffee", "ready")
    connection = await asyncpg.connect(await addon_url(api, "crashy"))  # the new password works
    await connection.close()


async def test_a_destroy_interrupted_before_the_drop_is_finished_by_running_it_again(
        addons_api, addons_admin_url):
    api = addons_api
    await api.call("POST", "/apps", json={"name": "halfgone"})
    addon, _ = await create(api, "halfgone")
    stopped, release = await api.store.addons.begin_destroy("halfgone", addon["name"])
    assert stopped.state is AddonState.DEPROVISIONING and release is not None  # then the crash
    assert (await api.call("GET", "/apps/halfgone/config-vars"))[1] == {}
    status, body, _ = await api.call("POST", "/apps/halfgone/addons",
                                     json={"kind": "postgresql"})
    assert status == 409 and "is being destroyed: finish with `dynomesh addons:destroy" in \
        body["message"]
    status, body, response = await api.call("DELETE", f"/apps/halfgone/addons/{addon['name']}")
    assert status == 200 and "Dynomesh-Release" not in response.headers  # already unset
    assert await server_has(addons_admin_url, addon["resource"]) == (False, False)


async def test_the_store_keeps_an_app_with_an_addon(store):
    """The safety net under `DELETE /apps/{app}`: no database outlives the row naming it."""
    from controlplane.store import errors

    await store.apps.create("kept")
    await store.addons.begin_create("kept", kind="postgresql", name="postgresql-abc123",
                                    resource="app_kept_abc123", config_var="DATABASE_URL")
    with pytest.raises(errors.Conflict, match="kept still has the add-on postgresql-abc123: "
                                              "destroy it first"):
        await store.apps.delete("kept")
    assert [a.name for a in await store.addons.list("kept")] == ["postgresql-abc123"]
