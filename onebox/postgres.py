"""`dynomesh up`'s own PostgreSQL server for add-ons, when the PostgreSQL server is installed.

The cluster lives in one directory (`UpConfig.addons_postgres_dir()`): `data/` (initdb's, made
on the first start), `admin-password` (0600, the `postgres` superuser's, which the control
plane gets in its environment and nobody sees) and `run/` (the Unix socket). Logins need a
password (scram-sha-256) even on loopback, since dynos on this machine must not get in as
someone else; and PUBLIC loses CONNECT on the `postgres` and `template1` databases, so an
app's role reaches only its own database. The server listens on 127.0.0.1 only.

PostgreSQL refuses to run as root: when `dynomesh up` is root, initdb and the server run as
the `postgres` user (setpriv, as the dyno manager switches users), and the directory is theirs.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from dynomesh import pgbin

SERVER_USER = "postgres"  # who the server runs as when `dynomesh up` is root
ADMIN = "postgres"
SERVER_DATABASES = ("postgres", "template1")  # initdb's; template0 refuses connections anyway
# initdb and pg_ctl finish in seconds; a bound keeps a wedged one from hanging start-up.
TOOL_TIMEOUT = 120.0
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LocalPostgresError(Exception):
    """The local server could not be prepared; the message says why and what to do."""


async def lock_down(admin_url: str) -> None:
    """Revoke PUBLIC's CONNECT on the server's own databases (initdb grants it), so that an
    app's role reaches its own database only: the add-on provider refuses a server where
    PUBLIC may connect anywhere (controlplane/addons/postgres.py). template0 takes no
    connections at all."""
    import asyncpg

    try:
        connection = await asyncpg.connect(admin_url, timeout=10)
        try:
            for database in SERVER_DATABASES:
                await connection.execute(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC')
        finally:
            await connection.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = getattr(exc, "sqlstate", None) or getattr(exc, "strerror", None) or \
            type(exc).__name__
        raise LocalPostgresError(f"could not revoke PUBLIC's CONNECT on its databases "
                                 f"({reason}); its log lines are above") from None


def find_bindir(pattern: str = pgbin.BIN_GLOB, path: str | None = None) -> Path | None:
    """The newest installed server's bin dir (one with initdb), else the one on PATH."""
    initdb = pgbin.find("initdb", pattern=pattern, path=path)
    return None if initdb is None else initdb.parent


@dataclass(frozen=True)
class LocalPostgres:
    bindir: Path
    root: Path
    port: int
    run_as: str | None = None  # a user to switch to (when we are root), else ourselves

    @classmethod
    def for_this_user(cls, bindir: Path, root: Path, port: int) -> "LocalPostgres":
        return cls(bindir, root, port, SERVER_USER if os.geteuid() == 0 else None)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def password_file(self) -> Path:
        return self.root / "admin-password"

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists() and self.password_file.exists()

    def admin_url(self) -> str:
        password = self.password_file.read_text().strip()
        return f"postgresql://{ADMIN}:{password}@127.0.0.1:{self.port}/postgres"

    def server_argv(self) -> list[str]:
        """The server in the foreground, for `dynomesh up` to supervise like its other parts."""
        return self._as_user(
            str(self.bindir / "postgres"), "-D", str(self.data),
            "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={self.root / 'run'}")

    def _as_user(self, *argv: str) -> list[str]:
        if self.run_as is None:
            return list(argv)
        setpriv = shutil.which("setpriv", path=_SBIN_PATH)
        if setpriv is None:
            raise LocalPostgresError("setpriv (util-linux) is missing: it runs PostgreSQL as "
                                     f"the {self.run_as} user, since PostgreSQL refuses root")
        # --pdeathsig: a parent-death signal set before the switch of user is cleared by it
        # (prctl(2)), so setpriv sets it again after; INT is PostgreSQL's fast shutdown.
        return [setpriv, f"--reuid={self.run_as}", f"--regid={self.run_as}", "--init-groups",
                "--pdeathsig", "INT", "--", *argv]

    def _give(self, path: Path) -> None:
        if self.run_as is not None:
            shutil.chown(path, user=self.run_as, group=self.run_as)

    async def initialize(self) -> None:
        """initdb with a new admin password (the first start)."""
        if self.run_as is not None:
            try:
                pwd.getpwnam(self.run_as)
            except KeyError:
                raise LocalPostgresError(
                    f"there is no {self.run_as} user to run PostgreSQL as (we are root, which "
                    "PostgreSQL refuses): install the postgresql package, which makes it") \
                    from None
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / "run").mkdir(exist_ok=True, mode=0o700)
        for path in (self.root, self.root / "run"):
            self._give(path)
        if self.data.exists():  # an initdb that did not finish: start it over
            shutil.rmtree(self.data)
        password = secrets.token_urlsafe(32)
        handover = self.root / "initdb-password"  # initdb reads it as the server's user
        handover.write_text(password + "\n")
        handover.chmod(0o600)
        self._give(handover)
        try:
            await self._tool("initdb", "-D", str(self.data), "-U", ADMIN,
                             "--auth=scram-sha-256", f"--pwfile={handover}", "-E", "UTF8",
                             "--no-locale")
        finally:
            handover.unlink(missing_ok=True)
        written = self.password_file.with_suffix(".new")
        written.write_text(password + "\n")
        written.chmod(0o600)
        written.replace(self.password_file)  # last: its presence says the cluster is whole

    async def stop_leftover(self) -> None:
        """Stop a server left running on this data directory (by a `dynomesh up` whose
        parent-death signal did not reach it, or one started by hand)."""
        if (self.data / "postmaster.pid").exists():
            await self._tool("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w",
                             "-t", "60", allowed=(0, 1, 3))  # 3: not running after all

    async def accepting(self) -> bool:
        """True once the server takes the admin's logins."""
        import asyncpg

        try:
            connection = await asyncpg.connect(self.admin_url(), timeout=2)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False  # not listening yet, or still starting up: asked again
        await connection.close()
        return True

    async def lock_down(self) -> None:
        """PUBLIC may not connect to the server's own databases, only apps' roles to theirs."""
        await lock_down(self.admin_url())

    async def _tool(self, tool: str, *args: str, allowed: tuple[int, ...] = (0,)) -> None:
        process = await asyncio.create_subprocess_exec(
            *self._as_user(str(self.bindir / tool), *args), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            async with asyncio.timeout(TOOL_TIMEOUT):
                output, _ = await process.communicate()
        except TimeoutError:
            process.send_signal(signal.SIGKILL)
            await process.wait()
            raise LocalPostgresError(f"{tool} did not finish within {TOOL_TIMEOUT:g} s") \
                from None
        if process.returncode not in allowed:
            text = output.decode("utf-8", "replace").strip()[-2000:]
            raise LocalPostgresError(f"{tool} failed (status {process.returncode}): {text}")
