"""A throwaway PostgreSQL cluster for tests, started from the installed server binaries.

`PostgresCluster.start()` runs initdb and pg_ctl in a fresh temp dir (as the `postgres` user
when we are root, since PostgreSQL refuses to run as root), listening on a free loopback port
with its Unix socket in the same dir; `stop()` shuts it down and removes the dir. Each test
gets its own database from `create_database()`, so tests never see each other's rows.

Only the `postgres` superuser logs in without a password (the fixtures' own connections); every
other role must give its SCRAM password on loopback, as on the add-on servers dynomesh runs,
so a test that logs in with a wrong password sees the real refusal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from onebox.postgres import find_bindir  # noqa: F401  (the search `dynomesh up` makes too)


# First match wins (pg_hba.conf docs): the fixtures' superuser is trusted, everyone else not.
PG_HBA = """\
local all all trust
host all postgres {clients} trust
host all all {clients} scram-sha-256
"""


class PostgresCluster:
    def __init__(self, bindir: Path, port: int, *, options: tuple[str, ...] = (),
                 host: str = "127.0.0.1", clients: str = "127.0.0.1/32",
                 run_in: tuple[str, ...] = ()) -> None:
        self.bindir = bindir
        self.port = port
        self.options = options  # more server settings, e.g. ("log_statement=ddl",)
        # Where it listens, who may connect (a CIDR), and a command prefix its programs run
        # under (`ip netns exec NS` for a server on a test network: tests/netns.py).
        self.host = host
        self.clients = clients
        self.run_in = run_in
        self.root = Path(tempfile.mkdtemp(prefix="dynomesh-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{name}"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        command = [*self.run_in, *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:1])} failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}")

    def start(self) -> "PostgresCluster":
        if self._as_postgres:
            shutil.chown(self.root, user="postgres", group="postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        (self.data / "pg_hba.conf").write_text(PG_HBA.format(clients=self.clients))
        # fsync off: the tests kill control planes, never this server, and it saves seconds.
        options = (f"-c listen_addresses={self.host} -c port={self.port} "
                   f"-c unix_socket_directories={self.root} -c fsync=off "
                   f"-c max_connections=200 -c shared_buffers=32MB"
                   + "".join(f" -c {option}" for option in self.options))
        # -w: pg_ctl returns once the server accepts connections.
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-o", options,
                  "-l", str(self.log))
        return self

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


async def create_database(admin_url: str) -> str:
    """A new, empty database on the server at `admin_url`; returns its name."""
    import asyncpg

    name = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
