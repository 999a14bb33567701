"""The REST API on a real loopback socket: success, validation and auth paths of every endpoint."""

from __future__ import annotations

import os
import re

import pytest

from controlplane.store.models import Role
from tests.controlplane.conftest import HELLO_SLUG, checksum, slug_bytes

EXAMPLE_PATHS = {"app": "hello", "addon": "postgresql-1a2b3c", "hostname": "www.example.test",
                 "feature": "preboot",
                 "slug": "s", "release": "1", "type": "web", "token": "t", "dyno": "web.1",
                 "vm": "vm-1", "drain": "d.1", "build": "1", "cert": "c"}
# Endpoints for routers and dyno managers (and users): their roles are tested in test_feeds.py
# and test_logs.py.
FLEET_PATHS = {"/feeds/routes", "/feeds/assignments", "/slugs/s/download", "/vms/vm-1",
               "/vms/vm-1/heartbeat", "/vms/vm-1/states", "/logs",
               "/vms/vm-1/dynos/web.1/attach"}


def routes(api):
    """(method, concrete path) of every endpoint the API serves, HEAD aside."""
    for route in api.client.app.router.routes():
        if route.method == "HEAD":
            continue
        canonical = route.resource.canonical
        yield route.method, re.sub(r"\{(\w+)\}", lambda m: EXAMPLE_PATHS[m.group(1)], canonical)


# --- auth on every endpoint ---

async def test_every_endpoint_but_healthz_needs_a_token(api):
    checked = 0
    for method, path in routes(api):
        status, body, response = await api.call(method, path, role=None)
        if path == "/healthz":
            assert status == 200
            continue
        assert status == 401, (method, path)
        assert body["id"] == "unauthorized" and "Bearer" in body["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        status, body, _ = await api.call(method, path, role=None,
                                         headers={"Authorization": "Bearer dmt_not-a-token"})
        assert status == 401, (method, path)
        status, _, _ = await api.call(method, path, role=None,
                                      headers={"Authorization": f"Basic {api.tokens[Role.USER]}"})
        assert status == 401, (method, path)
        checked += 1
    assert checked >= 26


async def test_router_and_dynomgr_tokens_are_refused_on_user_endpoints(api):
    for role in (Role.ROUTER, Role.DYNOMGR):
        for method, path in routes(api):
            if path in ("/healthz", "/account") or path in FLEET_PATHS:
                continue
            status, body, _ = await api.call(method, path, role=role)
            assert status == 403, (role, method, path)
            assert body["id"] == "forbidden" and "needs a user token" in body["message"]


async def test_account_tells_each_role_who_it_is(api):
    for role in Role:
        status, body, _ = await api.call("GET", "/account", role=role)
        assert status == 200 and body["role"] == role.value
    assert (await api.call("GET", "/account", role=Role.DYNOMGR))[1]["vm_id"] == "vm-1"


async def test_healthz_answers_without_a_token(api):
    status, body, _ = await api.call("GET", "/healthz", role=None)
    assert (status, body) == (200, {"status": "ok"})


async def test_unknown_endpoints_and_methods_get_json_errors(api):
    status, body, _ = await api.call("GET", "/nope")
    assert (status, body["id"]) == (404, "not_found")
    status, body, _ = await api.call("PUT", "/apps")
    assert (status, body["id"]) == (405, "method_not_allowed")


# --- apps ---

async def test_apps_create_list_info_and_delete(api):
    status, app, _ = await api.call("POST", "/apps", json={"name": "hello"})
    assert status == 201
    assert app["name"] == "hello" and app["maintenance"] is False
    assert app["web_url"] == "http://hello.localhost:8080/"
    assert (await api.call("GET", "/apps"))[1] == [app]
    assert (await api.call("GET", "/apps/hello"))[1] == app
    assert (await api.call("GET", f"/apps/{app['id']}"))[1] == app
    status, deleted, _ = await api.call("DELETE", "/apps/hello")
    assert status == 200 and deleted["id"] == app["id"]
    status, body, _ = await api.call("GET", "/apps/hello")
    assert status == 404 and body["id"] == "not_found" and "dynomesh apps" in body["message"]


async def test_an_app_without_a_name_gets_a_generated_one(api):
    status, app, _ = await api.call("POST", "/apps")
    assert status == 201 and re.match(r"^[a-z]+-[a-z]+-\d{4}$", app["name"])


@pytest.mark.parametrize("name", ["Hello", "ab", "1abc", "hello-", "a" * 31, "hel_lo", 42])
async def test_bad_app_names_are_refused_with_the_rule(api, name):
    status, body, _ = await api.call("POST", "/apps", json={"name": name})
    assert status == 422 and body["id"] == "invalid_params"
    assert "lowercase letters, digits and dashes" in body["message"]


async def test_app_create_validates_its_body(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    status, body, _ = await api.call("POST", "/apps", json={"name": "hello"})
    assert (status, body["id"]) == (409, "conflict") and "taken" in body["message"]
    status, body, _ = await api.call("POST", "/apps", json={"nmae": "x"})
    assert status == 422 and "unknown field 'nmae'" in body["message"]
    status, body, _ = await api.call("POST", "/apps", data=b"{not json",
                                     headers={"Content-Type": "application/json"})
    assert (status, body["id"]) == (400, "bad_request")
    status, body, _ = await api.call("POST", "/apps", json=["hello"])
    assert status == 400 and "JSON object" in body["message"]


async def test_oversized_bodies_are_refused(api):
    status, body, _ = await api.call("POST", "/apps", data=b"x" * (64 * 1024 + 1),
                                     headers={"Content-Type": "application/json"})
    assert (status, body["id"]) == (413, "request_too_large")


async def test_maintenance_is_switched_with_a_boolean(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    status, app, _ = await api.call("PATCH", "/apps/hello", json={"maintenance": True})
    assert status == 200 and app["maintenance"] is True
    status, body, _ = await api.call("PATCH", "/apps/hello", json={"maintenance": "yes"})
    assert status == 422 and "true or false" in body["message"]
    status, body, _ = await api.call("PATCH", "/apps/hello", json={})
    assert status == 422 and "maintenance" in body["message"]
    assert (await api.call("PATCH", "/apps/nope", json={"maintenance": True}))[0] == 404


# --- domains ---

async def test_domains_list_the_default_hostname_and_custom_ones(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    status, domain, _ = await api.call("POST", "/apps/hello/domains",
                                       json={"hostname": "WWW.Example.test"})
    assert status == 201 and domain["hostname"] == "www.example.test"
    assert domain["kind"] == "custom"
    await api.call("POST", "/apps/hello/domains", json={"hostname": "*.apps.example.test"})
    _, listed, _ = await api.call("GET", "/apps/hello/domains")
    assert [(d["hostname"], d["kind"]) for d in listed] == [
        ("hello.localhost", "default"), ("*.apps.example.test", "custom"),
        ("www.example.test", "custom")]
    status, removed, _ = await api.call("DELETE", "/apps/hello/domains/www.example.test")
    assert status == 200 and removed["id"] == domain["id"]
    status, body, _ = await api.call("DELETE", "/apps/hello/domains/www.example.test")
    assert status == 404 and "domains --app hello" in body["message"]


@pytest.mark.parametrize("hostname", ["localhost", "-a.example.test", "a..b", "*.*.example.test",
                                      "a.*.example.test", "exa mple.test", "x" * 64 + ".test",
                                      "1.2.3.4", 7])
async def test_bad_hostnames_are_refused(api, hostname):
    await api.call("POST", "/apps", json={"name": "hello"})
    status, body, _ = await api.call("POST", "/apps/hello/domains", json={"hostname": hostname})
    assert status == 422 and "invalid hostname" in body["message"]


async def test_a_hostname_belongs_to_one_app_and_not_to_the_platform(api):
    for name in ("one", "two"):
        await api.call("POST", "/apps", json={"name": name})
    await api.call("POST", "/apps/one/domains", json={"hostname": "www.example.test"})
    status, body, _ = await api.call("POST", "/apps/two/domains",
                                     json={"hostname": "www.example.test"})
    assert status == 409 and "app 'one'" in body["message"]
    status, body, _ = await api.call("POST", "/apps/two/domains",
                                     json={"hostname": "one.localhost"})
    assert status == 422 and "base domain" in body["message"]
    status, body, _ = await api.call("DELETE", "/apps/one/domains/one.localhost")
    assert status == 422 and "default hostname" in body["message"]


# --- features ---

async def test_features_are_listed_and_switched(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    _, features, _ = await api.call("GET", "/apps/hello/features")
    assert [(f["name"], f["enabled"]) for f in features] == [("preboot", False),
                                                              ("http-session-affinity", False)]
    status, feature, _ = await api.call("PATCH", "/apps/hello/features/preboot",
                                        json={"enabled": True})
    assert status == 200 and feature["enabled"] is True
    assert (await api.call("GET", "/apps/hello/features/preboot"))[1]["enabled"] is True
    status, body, _ = await api.call("PATCH", "/apps/hello/features/turbo",
                                     json={"enabled": True})
    assert status == 404 and "preboot" in body["message"]
    assert (await api.call("GET", "/apps/hello/features/turbo"))[0] == 404
    status, _, _ = await api.call("PATCH", "/apps/hello/features/preboot", json={"enabled": 1})
    assert status == 422


# --- config vars ---

async def test_config_changes_are_releases_and_null_deletes(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    v1 = await api.deploy("hello")
    status, config, response = await api.call("PATCH", "/apps/hello/config-vars",
                                              json={"GREETING": "hi", "OTHER": "x"})
    assert status == 200 and config == {"GREETING": "hi", "OTHER": "x"}
    assert response.headers["Dynomesh-Release"] == "2"
    _, config, response = await api.call("PATCH", "/apps/hello/config-vars",
                                         json={"OTHER": None})
    assert config == {"GREETING": "hi"} and response.headers["Dynomesh-Release"] == "3"
    _, _, response = await api.call("PATCH", "/apps/hello/config-vars", json={"GREETING": "hi"})
    assert "Dynomesh-Release" not in response.headers  # nothing changed, no release
    assert (await api.call("GET", "/apps/hello/config-vars"))[1] == {"GREETING": "hi"}
    _, releases, _ = await api.call("GET", "/apps/hello/releases")
    assert [r["description"] for r in releases] == [
        "Remove OTHER config vars", "Set GREETING, OTHER config vars", v1["description"]]
    assert v1["description"].startswith("Deploy ") and len(v1["description"]) == 15


@pytest.mark.parametrize("body, message", [
    ({"BAD-KEY": "x"}, "letters, digits and underscores"),
    ({"KEY": 3}, "must be a string"),
    ({}, "JSON object of config vars"),
    (["KEY"], "JSON object of config vars"),
    ({"KEY": "x" * (32 * 1024 + 1)}, "longer than"),
])
async def test_bad_config_patches_are_refused(api, body, message):
    await api.call("POST", "/apps", json={"name": "hello"})
    status, error, _ = await api.call("PATCH", "/apps/hello/config-vars", json=body)
    assert status == 422 and message in error["message"]
    assert (await api.call("GET", "/apps/hello/config-vars"))[1] == {}


# --- slugs ---

async def test_a_slug_upload_is_verified_and_recorded(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    data = slug_bytes(HELLO_SLUG)
    status, slug, _ = await api.call("POST", "/apps/hello/slugs", data=data,
                                     headers={"X-Slug-Checksum": checksum(data)})
    assert status == 201
    assert slug["checksum"] == checksum(data) and slug["size"] == len(data)
    assert slug["process_types"] == {"web": "python web.py", "worker": "python worker.py"}
    assert (api.config.slug_dir / f"{slug['id']}.tar.gz").read_bytes() == data
    assert (await api.call("GET", f"/apps/hello/slugs/{slug['id']}"))[1] == slug
    assert (await api.call("GET", "/apps/hello/slugs/nope"))[0] == 404


def _slug_files(api):
    return sorted(p.name for p in api.config.slug_dir.glob("*.tar.gz"))


@pytest.mark.parametrize("files, error_id, message", [
    ({"web.py": "x"}, "invalid_slug", "no Procfile"),
    ({"Procfile": "web python web.py"}, "invalid_slug", "line 1"),
    ({"Procfile": "web: a\n../evil: b"}, "invalid_slug", "invalid process type"),
    ({"Procfile": "web: x", "../escape": "x"}, "invalid_slug", "outside the app"),
])
async def test_unusable_slugs_are_refused_and_leave_no_file(api, files, error_id, message):
    await api.call("POST", "/apps", json={"name": "hello"})
    data = slug_bytes(files)
    status, body, _ = await api.call("POST", "/apps/hello/slugs", data=data,
                                     headers={"X-Slug-Checksum": checksum(data)})
    assert (status, body["id"]) == (422, error_id) and message in body["message"]
    assert _slug_files(api) == []


async def test_a_damaged_upload_fails_its_checksum(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    data = slug_bytes(HELLO_SLUG)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    status, body, _ = await api.call("POST", "/apps/hello/slugs", data=bytes(damaged),
                                     headers={"X-Slug-Checksum": checksum(data)})
    assert (status, body["id"]) == (422, "checksum_mismatch")
    assert "deploy again" in body["message"] and _slug_files(api) == []
    status, body, _ = await api.call("POST", "/apps/hello/slugs", data=data)
    assert status == 422 and "X-Slug-Checksum" in body["message"]
    status, body, _ = await api.call("POST", "/apps/hello/slugs", data=b"not a tarball",
                                     headers={"X-Slug-Checksum": checksum(b"not a tarball")})
    assert status == 422 and "not a readable .tar.gz" in body["message"]


async def test_a_slug_over_the_size_limit_is_refused(api_factory):
    api = await api_factory(max_slug_bytes=1024)
    await api.call("POST", "/apps", json={"name": "hello"})
    data = slug_bytes({**HELLO_SLUG, "big.bin": os.urandom(4096)})
    assert len(data) > 1024
    status, body, _ = await api.call("POST", "/apps/hello/slugs", data=data,
                                     headers={"X-Slug-Checksum": checksum(data)})
    assert (status, body["id"]) == (413, "request_too_large") and ".slugignore" in body["message"]

    async def chunked():  # no Content-Length: the limit is enforced while streaming
        yield data

    status, body, _ = await api.call("POST", "/apps/hello/slugs", data=chunked(),
                                     headers={"X-Slug-Checksum": checksum(data)})
    assert status == 413 and _slug_files(api) == []


async def test_deleting_an_app_removes_its_slug_files(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    await api.deploy("hello")
    assert len(_slug_files(api)) == 1
    await api.call("DELETE", "/apps/hello")
    assert _slug_files(api) == []


# --- releases ---

async def test_deploy_list_info_and_rollback(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    v1 = await api.deploy("hello")
    assert (v1["version"], v1["status"], v1["current"]) == (1, "succeeded", True)
    await api.call("PATCH", "/apps/hello/config-vars", json={"GREETING": "hi"})
    status, v3, _ = await api.call("POST", "/apps/hello/releases", json={"release": 1})
    assert status == 201
    assert (v3["version"], v3["description"], v3["slug"]) == (3, "Rollback to v1", v1["slug"])
    assert (await api.call("GET", "/apps/hello/config-vars"))[1] == {}
    _, listed, _ = await api.call("GET", "/apps/hello/releases")
    assert [(r["version"], r["current"]) for r in listed] == [(3, True), (2, False), (1, False)]
    assert [r["version"] for r in (await api.call("GET", "/apps/hello/releases?limit=1"))[1]] == [3]
    for ref in ("v1", "1", v1["id"]):
        assert (await api.call("GET", f"/apps/hello/releases/{ref}"))[1]["id"] == v1["id"]
    status, _, _ = await api.call("POST", "/apps/hello/releases", json={"release": "v2"})
    assert status == 201


@pytest.mark.parametrize("body, status, message", [
    ({}, 422, "either 'slug'"),
    ({"slug": "a", "release": 1}, 422, "either 'slug'"),
    ({"slug": "missing"}, 404, "upload it first"),
    ({"release": 9}, 404, "dynomesh releases"),
    ({"release": True}, 422, "release id or version"),
    ({"slug": 5}, 422, "must be a string"),
    ({"release": 1, "description": "x"}, 422, "Rollback to vN"),
])
async def test_bad_release_requests_are_refused(api, body, status, message):
    await api.call("POST", "/apps", json={"name": "hello"})
    await api.deploy("hello")
    got, error, _ = await api.call("POST", "/apps/hello/releases", json=body)
    assert got == status and message in error["message"]


async def test_release_listing_checks_its_limit(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    for limit in ("0", "x", "1001"):
        assert (await api.call("GET", f"/apps/hello/releases?limit={limit}"))[0] == 422
    assert (await api.call("GET", "/apps/hello/releases/v7"))[0] == 404


# --- formation ---

async def test_formation_follows_the_release_and_scales_in_batches(api):
    await api.call("POST", "/apps", json={"name": "hello"})
    status, body, _ = await api.call("PATCH", "/apps/hello/formation",
                                     json={"updates": [{"type": "web", "quantity": 1}]})
    assert status == 404 and "deploy" in body["message"]
    await api.deploy("hello")
    _, formation, _ = await api.call("GET", "/apps/hello/formation")
    assert [(f["type"], f["quantity"], f["size"], f["command"]) for f in formation] == [
        ("web", 1, "standard-1x", "python web.py"), ("worker", 0, "standard-1x", "python worker.py")]
    status, formation, _ = await api.call("PATCH", "/apps/hello/formation", json={"updates": [
        {"type": "web", "quantity": 3}, {"type": "worker", "quantity": 1, "size": "Standard-2X"}]})
    assert status == 200
    assert [(f["type"], f["quantity"], f["size"]) for f in formation] == [
        ("web", 3, "standard-1x"), ("worker", 1, "standard-2x")]
    status, web, _ = await api.call("PATCH", "/apps/hello/formation/web", json={"quantity": 0})
    assert (status, web["quantity"]) == (200, 0)
    assert (await api.call("GET", "/apps/hello/formation/web"))[1]["quantity"] == 0
    assert (await api.call("GET", "/apps/hello/formation/clock"))[0] == 404


@pytest.mark.parametrize("updates, status, message", [
    ([{"type": "web", "quantity": -1}], 422, "between 0 and 100"),
    ([{"type": "web", "quantity": 101}], 422, "between 0 and 100"),
    ([{"type": "web", "quantity": "3"}], 422, "whole number"),
    ([{"type": "web", "quantity": True}], 422, "whole number"),
    ([{"type": "web", "size": "huge"}], 422, "unknown dyno size"),
    ([{"type": "web"}], 422, "'quantity', 'size' or both"),
    ([{"quantity": 1}], 422, "missing field 'type'"),
    ([{"type": "we b", "quantity": 1}], 422, "invalid process type"),
    ([{"type": "web", "quantity": 1, "x": 1}], 422, "unknown field 'x'"),
    ([{"type": "web", "quantity": 2}, {"type": "web", "quantity": 1}], 422, "once"),
    ([{"type": "web", "quantity": 2}, {"type": "clock", "quantity": 1}], 404, "clock"),
    ([], 422, "non-empty list"),
    (["web=2"], 422, "must be an object"),
])
async def test_bad_formation_updates_change_nothing(api, updates, status, message):
    await api.call("POST", "/apps", json={"name": "hello"})
    await api.deploy("hello")
    got, error, _ = await api.call("PATCH", "/apps/hello/formation", json={"updates": updates})
    assert got == status and message in error["message"]
    _, formation, _ = await api.call("GET", "/apps/hello/formation")
    assert [f["quantity"] for f in formation] == [1, 0]


# --- tokens ---

async def test_tokens_are_created_once_listed_without_secrets_and_revoked(api):
    status, created, _ = await api.call("POST", "/tokens",
                                        json={"role": "router", "description": "edge-1"})
    assert status == 201 and created["token"].startswith("dmt_")
    status, who, _ = await api.call("GET", "/account", role=None,
                                    headers={"Authorization": f"Bearer {created['token']}"})
    assert (status, who["role"], who["description"]) == (200, "router", "edge-1")
    _, listed, _ = await api.call("GET", "/tokens")
    assert created["id"] in [t["id"] for t in listed]
    assert all("token" not in t for t in listed)
    status, _, _ = await api.call("DELETE", f"/tokens/{created['id']}")
    assert status == 200
    status, _, _ = await api.call("GET", "/account", role=None,
                                  headers={"Authorization": f"Bearer {created['token']}"})
    assert status == 401
    assert (await api.call("DELETE", f"/tokens/{created['id']}"))[0] == 404


@pytest.mark.parametrize("body, message", [
    ({"role": "admin"}, "unknown role"),
    ({"role": "dynomgr"}, "vm_id"),
    ({"role": "dynomgr", "vm_id": "bad id!"}, "vm_id"),
    ({"role": "user", "vm_id": "vm-1"}, "only dynomgr"),
    ({}, "missing field 'role'"),
    ({"role": "user", "description": "x" * 201}, "longer than"),
])
async def test_bad_token_requests_are_refused(api, body, message):
    status, error, _ = await api.call("POST", "/tokens", json=body)
    assert status == 422 and message in error["message"]


async def test_a_dynomgr_token_is_bound_to_its_vm(api):
    status, created, _ = await api.call("POST", "/tokens", json={"role": "dynomgr",
                                                                 "vm_id": "vm-7"})
    assert status == 201 and created["vm_id"] == "vm-7"
