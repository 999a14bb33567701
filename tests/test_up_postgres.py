"""`dynomesh up`'s own PostgreSQL for add-ons (onebox/postgres.py): made once with an admin
password, logins need passwords even on loopback, PUBLIC cannot connect to the server's own
databases, and a server left running on the data directory is stopped before a new start."""

from __future__ import annotations

import asyncio
import shutil
import stat

import asyncpg
import pytest

from onebox.config import Endpoint, UpConfig
from onebox.postgres import LocalPostgres, find_bindir
from tests.conftest import free_port
from tests.e2e.harness import shared_tmpdir


@pytest.fixture
def local_postgres():
    root = shared_tmpdir("dynomesh-addons-pg-")  # the server's user must pass through it
    bindir = find_bindir()
    if bindir is None:
        pytest.fail("no PostgreSQL server binaries: install the `postgresql` package")
    yield LocalPostgres.for_this_user(bindir, root / "addons-postgres", free_port())
    shutil.rmtree(root, ignore_errors=True)


async def fetchval(url: str, query: str):
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


# The server's own word that it is up (src/backend/postmaster/postmaster.c), on its stderr.
READY_LINE = b"database system is ready to accept connections"


async def start_server(local: LocalPostgres) -> tuple[asyncio.subprocess.Process, asyncio.Task]:
    """The server, once it has said it accepts connections; -> (it, the task that keeps
    reading its output so that it never blocks on a full pipe)."""
    server = await asyncio.create_subprocess_exec(
        *local.server_argv(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        while READY_LINE not in (line := await server.stderr.readline()):
            assert line, "the server exited before it accepted connections"
    drain = asyncio.create_task(server.stderr.read())
    return server, drain


async def test_the_local_server_wants_passwords_locks_public_out_and_is_stopped_if_left(
        local_postgres):
    local = local_postgres
    assert not local.initialized()
    await local.initialize()
    assert local.initialized()
    assert stat.S_IMODE(local.password_file.stat().st_mode) == 0o600
    assert not (local.root / "initdb-password").exists()
    server, drain = await start_server(local)
    try:
        assert await local.accepting()
        await local.lock_down()
        admin = local.admin_url()
        await fetchval(admin, "CREATE ROLE some_app LOGIN PASSWORD 'app-pw'")
        password = local.password_file.read_text().strip()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await fetchval(admin.replace(f":{password}@", ":wrong@"), "SELECT 1")
        app = f"postgresql://some_app:app-pw@127.0.0.1:{local.port}"
        for database in ("postgres", "template1"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError,
                               match=f'permission denied for database "{database}"'):
                await fetchval(f"{app}/{database}", "SELECT 1")

        await local.stop_leftover()  # as the next `dynomesh up` would find it
        async with asyncio.timeout(60):
            assert await server.wait() == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
        await drain


@pytest.mark.unit
def test_a_given_addon_server_means_no_local_one_and_its_password_stays_out_of_repr(tmp_path):
    config = UpConfig(home=tmp_path, addons_database_url="postgresql://a:s3cret@h/postgres")
    assert not config.starts_addons_postgres and "s3cret" not in repr(config)
    assert UpConfig(home=tmp_path).starts_addons_postgres
    assert not UpConfig(home=tmp_path, local_addons_postgres=False).starts_addons_postgres


@pytest.mark.unit
def test_the_local_addon_servers_port_must_differ_from_the_others(tmp_path):
    with pytest.raises(ValueError, match="need different ports"):
        UpConfig(home=tmp_path, api=Endpoint("127.0.0.1", 7000), addons_postgres_port=7000)
    UpConfig(home=tmp_path, api=Endpoint("127.0.0.1", 7000), addons_postgres_port=7000,
             local_addons_postgres=False)  # no local server: its port is not taken


@pytest.mark.unit
def test_the_newest_installed_server_is_found(tmp_path):
    for version in ("11", "16", "9"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").write_text("")
    (tmp_path / "17" / "bin").mkdir(parents=True)  # a client only: no initdb
    assert find_bindir(str(tmp_path / "*" / "bin"), path=str(tmp_path)) == \
        tmp_path / "16" / "bin"
    assert find_bindir(str(tmp_path / "none" / "*"), path=str(tmp_path / "none")) is None
