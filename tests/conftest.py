"""Fixtures every test tier shares: free loopback ports and the real `dynomesh` command.

Component-specific factories live in tests/<component>/conftest.py.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from tests.tiers import TIERS, PurityGuard, tier_of, uses_postgres

REPO_ROOT = Path(__file__).resolve().parent.parent


# --- tiers: unit, functional, e2e (and postgres); see tests/tiers.py ---------------------------

def pytest_collection_modifyitems(config, items):
    for item in items:
        marked = {marker.name for marker in item.iter_markers()} & set(TIERS)
        if len(marked) > 1:
            # `-m unit` selects by any marker, its module's too: such a test would run (and do
            # its I/O) in two tiers.
            raise pytest.UsageError(
                f"{item.nodeid} is marked {' and '.join(sorted(marked))}: a module marks its "
                f"tier as a whole or leaves it to each test, never both (tests/tiers.py)")
        tier = tier_of(item)
        if item.get_closest_marker(tier) is None:
            item.add_marker(tier)
        if uses_postgres(item):
            item.add_marker("postgres")


_purity = PurityGuard()


@pytest.fixture(autouse=True)
def _unit_tests_do_no_io(request):
    """A `unit` test runs with sockets and processes refused (tests/tiers.py)."""
    if tier_of(request.node) != "unit":
        yield
        return
    _purity.active = True
    try:
        yield
    finally:
        _purity.active = False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host` (loopback only; never a default port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def read_all(fd: int) -> bytes:
    """Everything until end of file on `fd` (a pipe's read end), which is then closed."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


@pytest.fixture
def unused_port() -> int:
    return free_port()


def dynomesh_argv(*args: str) -> list[str]:
    """argv that runs this checkout's `dynomesh` command in a subprocess."""
    return [sys.executable, "-m", "dynomesh", *args]


def dynomesh_env(**extra: str) -> dict[str, str]:
    """Environment for a `dynomesh` subprocess: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# --- PostgreSQL: one throwaway server per test session (the control plane's store tests) ---

@pytest.fixture(scope="session")
def postgres_server_url():
    """URL of a PostgreSQL server's admin database: $DYNOMESH_TEST_DATABASE_URL if set, else a
    throwaway cluster from the installed server binaries (a missing server fails, never skips)."""
    from tests.pgcluster import PostgresCluster, find_bindir

    configured = os.environ.get("DYNOMESH_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    bindir = find_bindir()
    if bindir is None:
        pytest.fail("no PostgreSQL server binaries (initdb, pg_ctl): install the `postgresql` "
                    "package or set DYNOMESH_TEST_DATABASE_URL")
    cluster = PostgresCluster(bindir, free_port()).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
async def postgres_url(postgres_server_url):
    """URL of a fresh, empty database on the test server, dropped after the test."""
    from urllib.parse import urlsplit, urlunsplit

    from tests.pgcluster import create_database, drop_database

    name = await create_database(postgres_server_url)
    url = urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{name}"))
    yield url
    await drop_database(postgres_server_url, name)


# --- AWS through moto (tests/motoserver.py) ----------------------------------------------------

@pytest.fixture(scope="session")
def moto_server():
    """One moto server on loopback for the session; each test makes its own bucket."""
    from tests.motoserver import serve

    with serve() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch):
    """This process's AWS SDKs talk to moto's fake account, never a real one."""
    from tests.motoserver import AWS_ENV

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    return AWS_ENV
