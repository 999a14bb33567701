"""The PostgreSQL add-on: a database and a login role of its own for each app, on one server.

The platform holds an admin URL for the server (`--addons-database-url`, a superuser or a
role with CREATEDB and CREATEROLE). For an add-on named `app_hello_1a2b3c` it makes:

- a role `app_hello_1a2b3c`: LOGIN with a random password, and NOSUPERUSER, NOCREATEDB,
  NOCREATEROLE, NOREPLICATION, so the app cannot widen its own reach;
- a database `app_hello_1a2b3c` owned by that role, with CONNECT (and TEMPORARY) revoked from
  PUBLIC, so no other app's role can connect to it (roles have CONNECT on a new database
  through PUBLIC by default; PostgreSQL docs, GRANT, "database privileges");
- in it, CREATE on the `public` schema revoked from PUBLIC (the default before PostgreSQL 15,
  CVE-2018-1058) and granted to the role.

Every step checks what exists first, so running `provision` again after a crash finishes the
job; it also sets a new password, the one the returned URL carries. `deprovision` drops the
database (WITH (FORCE): PostgreSQL 13 and later end its sessions) and the role, if they exist.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Iterator

import asyncpg

from controlplane.addons import errors, urls
from controlplane.addons.naming import quote_identifier, quote_literal

log = logging.getLogger(__name__)

KIND = "postgresql"
CONFIG_VAR = "DATABASE_URL"  # Heroku's name for the app's primary database
# What the driver raises: the server's refusals, and a server not reached or lost.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# A server that does not answer within this long is down, for the user's command.
CONNECT_TIMEOUT = 10.0


def new_password() -> str:
    # 32 random bytes, URL-safe base64: [A-Za-z0-9_-], nothing to escape in a URL or SQL.
    return secrets.token_urlsafe(32)


class PostgresProvider:
    kind = KIND
    config_var = CONFIG_VAR

    def __init__(self, admin_url: str, *,
                 password: Callable[[], str] = new_password) -> None:
        self._admin_url = admin_url
        self._address = urls.server_address(admin_url)
        self._password = password

    def __repr__(self) -> str:  # never the admin URL
        return f"PostgresProvider({self._address})"

    def location(self) -> str:
        return str(self._address)

    async def check(self) -> None:
        connection = await self._connect()
        await connection.close()

    async def provision(self, resource: str) -> str:
        role = database = quote_identifier(resource)
        password = self._password()
        connection = await self._connect()
        try:
            with self._translated("create the database and its role"):
                grants = (f"LOGIN PASSWORD {quote_literal(password)} NOSUPERUSER NOCREATEDB "
                          "NOCREATEROLE NOREPLICATION")
                if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1",
                                             resource):
                    await connection.execute(f"ALTER ROLE {role} WITH {grants}")
                else:
                    await connection.execute(f"CREATE ROLE {role} WITH {grants}")
                if not await connection.fetchval(
                        "SELECT 1 FROM pg_database WHERE datname = $1", resource):
                    # CREATE DATABASE cannot run in a transaction: asyncpg sends it alone.
                    await connection.execute(f"CREATE DATABASE {database} OWNER {role}")
                await connection.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
                await connection.execute(
                    f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role}")
        finally:
            await connection.close()
        inside = await self._connect(resource)
        try:
            with self._translated("lock down the new database's public schema"):
                await inside.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
                await inside.execute(f"GRANT ALL ON SCHEMA public TO {role}")
        finally:
            await inside.close()
        return urls.database_url(self._address, resource, password, resource)

    async def deprovision(self, resource: str) -> None:
        name = quote_identifier(resource)
        connection = await self._connect()
        try:
            with self._translated("drop the database and its role"):
                await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                await connection.execute(f"DROP ROLE IF EXISTS {name}")
        finally:
            await connection.close()

    # -- the one place asyncpg's exceptions become add-on errors ------------------------------

    async def _connect(self, database: str | None = None) -> asyncpg.Connection:
        url = self._admin_url if database is None else urls.with_database(self._admin_url,
                                                                          database)
        try:
            return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
        except _DRIVER_ERRORS as exc:
            raise self._translate(exc, "connect") from None

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except _DRIVER_ERRORS as exc:
            raise self._translate(exc, doing) from None

    def _translate(self, exc: Exception, doing: str) -> errors.AddonError:
        """An add-on error for `exc`, worded from our own text: the admin URL, its user and
        its password appear in none of them (`from None` drops the driver's chain)."""
        where = f"the add-on PostgreSQL server at {self._address}"
        fix = ("check that it runs and that the control plane's --addons-database-url points "
               "at it, then run the command again")
        if isinstance(exc, (asyncpg.InvalidPasswordError,
                            asyncpg.InvalidAuthorizationSpecificationError)):
            return errors.ProviderUnavailable(
                f"{where} refused the control plane's admin credentials: fix the user or "
                "password in --addons-database-url, then run the command again")
        if isinstance(exc, asyncpg.InsufficientPrivilegeError):
            return errors.ProviderFailed(
                f"{where} did not let the admin role {doing} ({exc.sqlstate}): give "
                "--addons-database-url a superuser, or a role with CREATEDB and CREATEROLE")
        if isinstance(exc, asyncpg.PostgresError):
            log.warning("addons: %s: could not %s: %s %s", where, doing, exc.sqlstate,
                        type(exc).__name__)
            return errors.ProviderFailed(
                f"{where} refused to {doing} ({exc.sqlstate} {type(exc).__name__}: "
                f"{getattr(exc, 'message', '')}); run the command again, or see the server's "
                "log")
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return errors.ProviderUnavailable(f"cannot reach {where} ({reason}): {fix}")
