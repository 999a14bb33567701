"""The real `dynomesh` command against a real `dynomesh control` process (SQLite, and PostgreSQL)."""

from __future__ import annotations

import json
import shutil
import stat
import tarfile

import pytest

from tests.conftest import REPO_ROOT
from tests.controlplane.harness import ControlPlane

HELLO = REPO_ROOT / "examples" / "hello"


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("cli") / "home").start()
    yield plane
    assert plane.stop() == 0, plane.log()


@pytest.fixture
def hello_dir(tmp_path):
    """A copy of examples/hello to deploy (so links are written to the test's own dir)."""
    target = tmp_path / "hello"
    shutil.copytree(HELLO, target, ignore=shutil.ignore_patterns(".dynomesh", "__pycache__"))
    return target


def ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def as_json(result):
    return json.loads(ok(result))


def test_first_start_writes_private_credentials_the_cli_uses(control):
    path = control.home / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["api"] == control.url
    who = as_json(control.cli("auth:whoami", "--json"))
    assert (who["role"], who["api"]) == ("user", control.url)


def test_the_readme_walk_through(control, hello_dir, tmp_path):
    ok(control.cli("apps:create", "walk", cwd=tmp_path))
    deployed = control.cli("deploy", str(hello_dir), "--app", "walk")
    assert "Released v1 of walk" in ok(deployed)
    assert "Uploading source: 100%" in deployed.stderr  # plain progress lines off a terminal
    assert "Verified sha256:" in deployed.stderr
    assert "web at 3:standard-1x, worker at 1:standard-1x" in ok(
        control.cli("ps:scale", "web=3", "worker=1", "--app", "walk"))
    assert "done, v2" in ok(control.cli("config:set", "GREETING=hi", "--app", "walk"))
    ok(control.cli("domains:add", "www.walk.test", "--app", "walk"))
    ok(control.cli("maintenance:on", "--app", "walk"))
    releases = as_json(control.cli("releases", "--app", "walk", "--json"))
    assert [(r["version"], r["description"][:6]) for r in releases] == [(2, "Set GR"), (1, "Deploy")]
    assert "Rollback to v1, now v3" in ok(control.cli("rollback", "v1", "--app", "walk"))
    assert as_json(control.cli("config", "--app", "walk", "--json")) == {}
    ok(control.cli("features:enable", "preboot", "--app", "walk"))
    info = as_json(control.cli("apps:info", "--app", "walk", "--json"))
    assert info["app"]["maintenance"] is True and info["current_release"]["version"] == 3
    assert [(f["type"], f["quantity"]) for f in info["formation"]] == [("web", 3), ("worker", 1)]
    assert [d["hostname"] for d in info["domains"]] == ["walk.localhost", "www.walk.test"]
    assert [f["enabled"] for f in info["features"]] == [True, False]
    created = control.cli("tokens:create", "--role", "router")
    secret = ok(created).strip()
    assert secret.startswith("dmt_") and "shown only this once" in created.stderr
    who = ok(control.cli("auth:whoami", DYNOMESH_TOKEN=secret, DYNOMESH_API=control.url))
    assert who.startswith("router token")


def test_rollback_skips_releases_without_code(control, hello_dir):
    ok(control.cli("apps:create", "configfirst", "--no-link"))
    ok(control.cli("config:set", "GREETING=hey", "--app", "configfirst"))  # v1: no slug
    ok(control.cli("deploy", str(hello_dir), "--app", "configfirst"))  # v2
    refused = control.cli("rollback", "--app", "configfirst")  # the one before is v1
    assert refused.returncode == 3
    assert "no earlier release with code" in refused.stderr
    refused = control.cli("rollback", "v1", "--app", "configfirst")
    assert refused.returncode == 1 and "v1 has no slug" in refused.stderr
    ok(control.cli("config:set", "GREETING=hi", "--app", "configfirst"))  # v3
    assert "Rollback to v2, now v4" in ok(control.cli("rollback", "--app", "configfirst"))
    current = as_json(control.cli("releases:info", "v4", "--app", "configfirst", "--json"))
    assert current["slug"] is not None


def test_a_linked_directory_needs_no_app_flag(control, hello_dir, tmp_path):
    ok(control.cli("apps:create", "linked", cwd=hello_dir))
    assert (hello_dir / ".dynomesh" / "app").read_text().strip() == "linked"
    ok(control.cli("deploy", cwd=hello_dir))
    ok(control.cli("config:set", "A=1", cwd=hello_dir / ".dynomesh"))  # below the linked dir
    assert ok(control.cli("config:get", "A", cwd=hello_dir)).strip() == "1"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = control.cli("config", cwd=elsewhere)
    assert result.returncode == 2 and "--app" in result.stderr
    assert ok(control.cli("config:get", "A", cwd=elsewhere, DYNOMESH_APP="linked")).strip() == "1"


def test_deploy_links_the_directory_it_deployed(control, hello_dir):
    ok(control.cli("apps:create", "deploy-link", "--no-link"))
    ok(control.cli("deploy", str(hello_dir), "--app", "deploy-link"))
    assert "v2" in ok(control.cli("deploy", cwd=hello_dir))
    assert (hello_dir / ".dynomesh" / "app").read_text().strip() == "deploy-link"


def test_deploy_refuses_a_directory_without_a_procfile(control, hello_dir):
    ok(control.cli("apps:create", "noproc", "--no-link"))
    (hello_dir / "Procfile").unlink()
    result = control.cli("deploy", str(hello_dir), "--app", "noproc")
    assert result.returncode == 2
    assert "has no Procfile" in result.stderr and "web: python web.py" in result.stderr
    (hello_dir / "Procfile").write_text("web python3 web.py\n")
    result = control.cli("deploy", str(hello_dir), "--app", "noproc")
    assert result.returncode == 2 and "Procfile line 1" in result.stderr
    assert as_json(control.cli("releases", "--app", "noproc", "--json")) == []


def test_deploy_leaves_out_git_dynomesh_and_slugignored_files(control, hello_dir):
    ok(control.cli("apps:create", "packing", "--no-link"))
    (hello_dir / ".git").mkdir()
    (hello_dir / ".git" / "HEAD").write_text("ref: main\n")
    (hello_dir / "logs").mkdir()
    (hello_dir / "logs" / "today.log").write_text("x")
    (hello_dir / "lib").mkdir()
    (hello_dir / "lib" / "util.py").write_text("x = 1\n")
    (hello_dir / "lib" / "util.pyc").write_bytes(b"\0")
    (hello_dir / ".slugignore").write_text("*.pyc\n/logs\n")
    release = as_json(control.cli("deploy", str(hello_dir), "--app", "packing", "--json"))
    slug_file = control.home / "slugs" / f"{release['slug']['id']}.tar.gz"
    with tarfile.open(slug_file) as archive:
        names = sorted(archive.getnames())
    assert names == [".slugignore", "Procfile", "lib", "lib/util.py", "web.py", "worker.py"]


def test_lists_are_tables_and_json_is_json(control, hello_dir):
    ok(control.cli("apps:create", "tables", "--no-link"))
    ok(control.cli("deploy", str(hello_dir), "--app", "tables"))
    lines = ok(control.cli("ps:scale", "--app", "tables")).splitlines()
    assert lines[0].split() == ["TYPE", "QUANTITY", "SIZE", "COMMAND"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split()[:3] == ["web", "1", "standard-1x"]
    apps = as_json(control.cli("apps", "--json"))
    assert "tables" in [a["name"] for a in apps]
    formation = as_json(control.cli("ps:scale", "web=2:standard-2x", "--app", "tables", "--json"))
    assert [(f["type"], f["quantity"], f["size"]) for f in formation][0] == ("web", 2, "standard-2x")


def test_exit_codes_tell_scripts_what_went_wrong(control, tmp_path):
    ok(control.cli("apps:create", "codes", "--no-link"))
    taken = control.cli("apps:create", "codes", "--no-link")
    assert taken.returncode == 1 and "already taken" in taken.stderr
    missing = control.cli("apps:info", "--app", "no-such-app")
    assert missing.returncode == 3 and "dynomesh apps" in missing.stderr
    assert control.cli("config:get", "NOPE", "--app", "codes").returncode == 3
    bad_token = control.cli("apps", DYNOMESH_TOKEN="dmt_nope", DYNOMESH_API=control.url)
    assert bad_token.returncode == 4 and "tokens:create" in bad_token.stderr
    router = ok(control.cli("tokens:create", "--role", "router")).strip()
    forbidden = control.cli("apps", DYNOMESH_TOKEN=router, DYNOMESH_API=control.url)
    assert forbidden.returncode == 4 and "needs a user token" in forbidden.stderr
    empty_home = tmp_path / "nobody"
    no_token = control.cli("apps", DYNOMESH_HOME=str(empty_home))
    assert no_token.returncode == 4 and "dynomesh control" in no_token.stderr
    from tests.conftest import free_port
    down = control.cli("apps", DYNOMESH_API=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 5 and "cannot reach the control plane" in down.stderr
    unknown = control.cli("apps:craete", "x")
    assert unknown.returncode == 2 and "apps:create" in unknown.stderr
    assert control.cli("ps:scale", "web=lots", "--app", "codes").returncode == 2
    refused = control.cli("apps:destroy", "--app", "codes")
    assert refused.returncode == 2 and "--confirm codes" in refused.stderr
    ok(control.cli("apps:destroy", "--app", "codes", "--confirm", "codes"))
    assert control.cli("apps:info", "--app", "codes").returncode == 3


def test_control_plane_restart_keeps_state_and_the_same_credentials(tmp_path, hello_dir):
    plane = ControlPlane(tmp_path / "home").start()
    try:
        token = plane.token
        ok(plane.cli("apps:create", "restart", "--no-link"))
        ok(plane.cli("deploy", str(hello_dir), "--app", "restart"))
        assert plane.stop() == 0
        plane.start()
        assert plane.token == token
        assert "v1" in ok(plane.cli("releases", "--app", "restart"))
    finally:
        plane.stop()


def test_the_cli_works_the_same_on_postgresql(tmp_path, hello_dir, postgres_url):
    plane = ControlPlane(tmp_path / "home", database_url=postgres_url).start()
    try:
        ok(plane.cli("apps:create", "pg-hello", "--no-link"))
        assert "Released v1" in ok(plane.cli("deploy", str(hello_dir), "--app", "pg-hello"))
        assert "done, v2" in ok(plane.cli("config:set", "GREETING=hi", "--app", "pg-hello"))
        assert "v3" in ok(plane.cli("rollback", "--app", "pg-hello"))
    finally:
        assert plane.stop() == 0, plane.log()


def test_control_says_so_when_its_port_is_taken(tmp_path):
    import socket
    import subprocess

    from tests.conftest import dynomesh_argv, dynomesh_env

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(dynomesh_argv("control", "--home", str(tmp_path / "home"),
                                              "--listen", f"127.0.0.1:{port}"),
                                env=dynomesh_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Address already in use" in result.stderr and "--listen" in result.stderr
    assert not (tmp_path / "home" / "credentials.json").exists()
