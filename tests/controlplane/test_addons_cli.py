"""The add-on commands as a user runs them: the real `dynomesh` command against a real
`dynomesh control` whose add-on server is the test PostgreSQL server. The admin's password
(given through $DYNOMESH_ADDONS_DATABASE_URL) appears in no command's output and no log."""

from __future__ import annotations

import json
import re
import sys

import asyncpg
import pytest

from tests.conftest import free_port
from tests.controlplane.harness import ControlPlane


@pytest.fixture(scope="module")
def control(tmp_path_factory, addons_admin_url):
    plane = ControlPlane(tmp_path_factory.mktemp("addons-cli") / "home",
                         environ={"DYNOMESH_ADDONS_DATABASE_URL": addons_admin_url}).start()
    yield plane
    assert plane.stop() == 0, plane.log()


def ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def admin_password(admin_url: str) -> str:
    return re.match(r"postgresql://[^:]+:([^@]+)@", admin_url).group(1)


def test_create_list_info_psql_and_destroy(control, addons_admin_url):
    said = []

    def run(*args, **env):
        result = control.cli(*args, **env)
        said.extend([result.stdout, result.stderr])
        return result

    ok(run("apps:create", "notes", "--no-link"))
    created = ok(run("addons:create", "postgresql", "--app", "notes"))
    name = re.match(r"Created (postgresql-[0-9a-f]{6}) as DATABASE_URL on notes, v1\n",
                    created).group(1)
    assert f"`dynomesh pg:psql --app notes` opens psql on it" in created
    listing = ok(run("addons", "--app", "notes")).splitlines()
    assert listing[0].split() == ["NAME", "KIND", "STATE", "CONFIG", "VAR", "CREATED"]
    assert listing[2].split()[:4] == [name, "postgresql", "ready", "DATABASE_URL"]
    info = ok(run("addons:info", name, "--app", "notes"))
    url = ok(run("config:get", "DATABASE_URL", "--app", "notes")).strip()
    password = re.match(r"postgresql://[^:]+:([^@]+)@", url).group(1)
    assert f"Config var: DATABASE_URL={url.replace(password, '***')}\n" in info
    assert password not in info  # Heroku shows an add-on's var by name; config:get has it
    assert "`dynomesh config:get DATABASE_URL --app notes` prints it" in info
    address = addons_admin_url.rpartition("@")[2].split("/")[0]
    assert f"Server:     {address}\n" in info
    resource = json.loads(ok(run("addons:info", name, "--app", "notes", "--json")))["resource"]

    psql = run("pg:psql", "--app", "notes", "-c", "SELECT current_user")
    assert resource in ok(psql)
    refused = run("addons:destroy", name, "--app", "notes")
    assert refused.returncode == 2
    assert f"dynomesh addons:destroy {name} --app notes --confirm notes" in refused.stderr
    destroyed = ok(run("addons:destroy", name, "--app", "notes", "--confirm", "notes"))
    assert destroyed == (f"Destroyed {name} on notes: its postgresql resource is gone and "
                         "DATABASE_URL unset, v2\n")
    assert "has no add-ons" in ok(run("addons", "--app", "notes"))
    unknown = run("addons:create", "redis", "--app", "notes")
    assert unknown.returncode == 1 and "the kinds are postgresql" in unknown.stderr

    secret = admin_password(addons_admin_url)
    assert not [text for text in said if secret in text]
    assert secret not in control.log() and not [l for l in control.output if secret in l]


def test_pg_psql_without_an_addon_says_how_to_make_one(control):
    ok(control.cli("apps:create", "nodb", "--no-link"))
    result = control.cli("pg:psql", "--app", "nodb")
    assert result.returncode == 3
    assert "nodb has no postgresql add-on: `dynomesh addons:create postgresql --app nodb`" \
        in result.stderr


def test_an_unreachable_addon_server_is_an_unavailable_exit_naming_the_server(tmp_path):
    port = free_port()
    plane = ControlPlane(tmp_path / "home", environ={
        "DYNOMESH_ADDONS_DATABASE_URL": f"postgresql://admin:pw-9z@127.0.0.1:{port}/postgres"}
    ).start()
    try:
        ok(plane.cli("apps:create", "away", "--no-link"))
        result = plane.cli("addons:create", "postgresql", "--app", "away")
        assert result.returncode == 5
        assert result.stderr.splitlines()[-1].startswith(
            f" !    cannot reach the add-on PostgreSQL server at 127.0.0.1:{port} (Connection "
            "refused): check that it runs")
        assert "pw-9z" not in result.stderr + plane.log()
    finally:
        assert plane.stop() == 0, plane.log()


def test_the_cli_commands_load_without_the_store_or_the_addon_service():
    """Every `dynomesh` user command imports its command modules: the add-on commands must
    not pull the control plane's store (or asyncpg) into each of them."""
    import subprocess

    from tests.conftest import dynomesh_env

    probe = ("import sys, controlplane.cli.commands; print(sorted(m for m in sys.modules if "
             "m.startswith(('controlplane.store', 'controlplane.addons.service', 'asyncpg'))))")
    result = subprocess.run([sys.executable, "-c", probe], env=dynomesh_env(),
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "")
