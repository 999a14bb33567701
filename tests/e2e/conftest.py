"""One `dynomesh up` shared by the e2e tests (each test brings its own app and destroys it)."""

from __future__ import annotations

import json
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import Api, Cli, RouterClient, Up, poll, shared_tmpdir
from tests.wheelindex import WheelIndex, wheelhouse


@dataclass
class Platform:
    up: Up
    cli: Cli
    api: Api
    router: RouterClient

    def agent_dynos(self, app: str | None = None) -> list[dict]:
        """What the dyno manager itself runs (its admin /dynos), optionally one app's."""
        with urllib.request.urlopen(f"{self.up.dynomgr_admin}/dynos", timeout=10) as response:
            dynos = json.loads(response.read())["dynos"]
        return [d for d in dynos if app is None or d["app"] == app]


@pytest.fixture(scope="session")
def wheel_index():
    """The test wheelhouse as a package index on loopback: builds' pip looks nowhere else."""
    with WheelIndex(wheelhouse()) as index:
        yield index


@pytest.fixture(scope="session")
def platform(wheel_index):
    home = shared_tmpdir("dynomesh-e2e-")
    # tests/e2e/test_addons.py uses its PostgreSQL; the build tests its package index.
    up = Up(home, addons_postgres=True, env={"DYNOMESH_BUILD_PIP_INDEX_URL": wheel_index.url})
    try:
        up.wait_ready()
        yield Platform(up, Cli(home), Api(home), RouterClient(up.http_port))
    finally:
        up.kill()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def make_app(platform):
    """Creates apps (fixed names, so that dyno users are reused across runs); destroys them
    after the test and waits until the dyno manager runs none of their dynos."""
    made: list[str] = []

    def make(name: str) -> str:
        platform.cli.ok("apps:create", name, "--no-link")
        made.append(name)
        return name

    yield make
    for name in made:
        platform.cli.ok("apps:destroy", "--app", name, "--confirm", name)
    for name in made:
        poll(lambda: not platform.agent_dynos(name), f"{name}'s dynos to stop after "
             "apps:destroy", timeout=60)


@pytest.fixture
def workdir(tmp_path) -> Path:
    """Where a test puts the app directories it deploys."""
    return tmp_path
