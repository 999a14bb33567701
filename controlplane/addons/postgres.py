"""The PostgreSQL add-on: a database and a login role of its own for each app, on one server.

The platform holds an admin URL for the server (`--addons-database-url`, a superuser: only a
superuser can clear what other roles left on an app's role in any database, and own databases
on an app role's behalf). For an add-on named `app_hello_1a2b3c` it makes:

- a role `app_hello_1a2b3c`: LOGIN with a random password, NOSUPERUSER, NOCREATEDB,
  NOCREATEROLE, NOREPLICATION, so the app cannot widen its own reach, and at most
  CONNECTION_LIMIT sessions, so one app cannot take every connection the server has;
- a database `app_hello_1a2b3c` owned by that role, with CONNECT (and TEMPORARY) revoked from
  PUBLIC, so no other app's role can connect to it (roles have CONNECT on a new database
  through PUBLIC by default; PostgreSQL docs, GRANT, "database privileges"). It is made with
  ALLOW_CONNECTIONS false and opened only once PUBLIC is out, so not even a crash in between
  leaves it open to every role;
- in it, CREATE on the `public` schema revoked from PUBLIC (the default before PostgreSQL 15,
  CVE-2018-1058) and granted to the role.

That isolation holds only if no other database on the server lets every role in: `check_safe`
refuses a server where PUBLIC may connect anywhere, naming the REVOKE its operator should run.
The password is sent as a SCRAM verifier computed here (`scram.py`), so no statement the server
logs holds it. Every step checks what exists first, so running `provision` again after a crash
finishes the job (a fresh create instead refuses a name someone else took). `deprovision` drops
the database (WITH (FORCE): PostgreSQL 13 and later end its sessions), then what the role owns
or was granted anywhere else (another app may have let it in), then the role.

Create and destroy of one resource take turns across control nodes: `exclusive` holds a
session advisory lock on the add-on server, which goes with the session if its node dies.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg

from controlplane.addons import errors, scram, urls
from controlplane.addons.naming import quote_identifier, quote_literal, sql_name

log = logging.getLogger(__name__)

KIND = "postgresql"
CONFIG_VAR = "DATABASE_URL"  # Heroku's name for the app's primary database
# pg_try_advisory_lock(LOCK_CLASS, hashtext(resource)): the two-key form, whose key space is
# apart from the one-key locks the store takes (PostgreSQL docs, advisory lock functions), and
# a first key ("dynm") that says whose locks they are on a server shared with others.
LOCK_CLASS = 0x64796E6D
# Heroku's smallest plans allow 20 connections per database (Essential-0); more than a few
# dynos' pools, and a server's default max_connections of 100 serves five such apps at full.
CONNECTION_LIMIT = 20
# What the driver raises: the server's refusals, and a server not reached or lost.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# A server that does not answer within this long is down, for the user's command.
CONNECT_TIMEOUT = 10.0
# A statement that takes longer is stuck (CREATE and DROP DATABASE copy or remove a few MB and
# end sessions): the command fails and can be run again, rather than hang the request.
COMMAND_TIMEOUT = 60.0
# Databases a role may still depend on after its own is dropped: a bound on the loop below.
OTHER_DATABASES_MAX = 1000


def new_password() -> str:
    # 32 random bytes, URL-safe base64: [A-Za-z0-9_-], nothing to escape in a URL or SQL.
    return secrets.token_urlsafe(32)


def new_verifier(password: str) -> str:
    return scram.verifier(password, secrets.token_bytes(scram.SALT_BYTES))


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

    async def check_safe(self) -> None:
        connection = await self._connect()
        try:
            with self._translated("check who may connect where"):
                superuser = await connection.fetchval(
                    "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                open_to_all = [r[0] for r in await connection.fetch(
                    "SELECT datname FROM pg_database WHERE datallowconn "
                    "AND has_database_privilege('public', oid, 'CONNECT') ORDER BY datname")]
        finally:
            await connection.close()
        where = f"the add-on PostgreSQL server at {self._address}"
        if not superuser:
            raise errors.UnsafeServer(
                f"the admin role of --addons-database-url is not a superuser of {where}: give "
                "it one (only a superuser can own an app's database for its role and clear "
                "what other roles granted that role), then run the command again")
        if open_to_all:
            revokes = " ".join(f"REVOKE CONNECT ON DATABASE {sql_name(d)} FROM PUBLIC;"
                               for d in open_to_all)
            raise errors.UnsafeServer(
                f"on {where} every role may connect to the databases {', '.join(open_to_all)}, "
                f"so an app's role could too: as its admin, run `{revokes}` (GRANT CONNECT to "
                "the roles that need them), then run the command again. Do not give add-ons "
                "the server that holds the platform's own store")

    @contextlib.asynccontextmanager
    async def exclusive(self, resource: str) -> AsyncIterator[None]:
        connection = await self._connect()
        try:
            with self._translated("lock the add-on"):
                held = await connection.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_CLASS, resource)
            if not held:
                raise errors.Busy(f"{resource} is locked by another session")
            yield  # the lock is the session's: closing the connection releases it
        finally:
            await connection.close()

    async def provision(self, resource: str, *, fresh: bool) -> str:
        role = database = quote_identifier(resource)
        password = self._password()
        connection = await self._connect()
        try:
            with self._translated("create the database and its role"):
                role_exists, database_exists = await self._exists(connection, resource)
                if fresh and (role_exists or database_exists):
                    raise errors.ResourceExists(
                        f"the add-on PostgreSQL server at {self._address} already has a "
                        f"{'role' if role_exists else 'database'} named {resource}, which no "
                        "add-on here made: it was left as it is. Run the command again for "
                        f"another name; drop {resource} on the server if nothing uses it")
                attributes = (f"LOGIN PASSWORD {quote_literal(new_verifier(password))} "
                              "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                              f"CONNECTION LIMIT {CONNECTION_LIMIT}")
                verb = "ALTER" if role_exists else "CREATE"
                await connection.execute(f"{verb} ROLE {role} WITH {attributes}")
                if not database_exists:
                    # CREATE DATABASE cannot run in a transaction: asyncpg sends it alone.
                    await connection.execute(
                        f"CREATE DATABASE {database} OWNER {role} ALLOW_CONNECTIONS false")
                await connection.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
                await connection.execute(
                    f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role}")
                await connection.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
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
                if not (await self._exists(connection, resource))[0]:
                    return
                others = await connection.fetch(
                    "SELECT DISTINCT d.datname, pg_get_userbyid(d.datdba) AS owner "
                    "FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid "
                    "WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = "
                    "(SELECT oid FROM pg_roles WHERE rolname = $1) "
                    "AND d.datname <> current_database() ORDER BY 1 LIMIT $2",
                    resource, OTHER_DATABASES_MAX)
            for other in others:
                await self._release_in(other["datname"], resource, other["owner"])
            with self._translated("drop the database and its role"):
                # Here too: what it owns in this database, and its privileges on databases
                # (shared objects), such as CONNECT that another app's role granted it.
                await connection.execute(f"DROP OWNED BY {name}")
                await connection.execute(f"DROP ROLE IF EXISTS {name}")
        finally:
            await connection.close()

    async def _release_in(self, database: str, resource: str, owner: str) -> None:
        """In another database (one whose owner let the role in), hand what the role made to
        that database's owner, so its data stays with it, and drop the role's privileges: a
        role that owns or may use anything cannot be dropped (2BP01)."""
        connection = await self._connect(database)
        try:
            with self._translated(f"clear what {resource} holds in database {database}"):
                if owner != resource:
                    await connection.execute(f"REASSIGN OWNED BY {quote_identifier(resource)} "
                                             f"TO {quote_identifier(owner)}")
                await connection.execute(f"DROP OWNED BY {quote_identifier(resource)}")
        finally:
            await connection.close()

    @staticmethod
    async def _exists(connection: asyncpg.Connection, resource: str) -> tuple[bool, bool]:
        """(a role named `resource` exists, a database named `resource` exists)."""
        row = await connection.fetchrow(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), "
            "EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", resource)
        return bool(row[0]), bool(row[1])

    # -- the one place asyncpg's exceptions become add-on errors ------------------------------

    async def _connect(self, database: str | None = None) -> asyncpg.Connection:
        url = self._admin_url if database is None else urls.with_database(self._admin_url,
                                                                          database)
        try:
            return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT,
                                         command_timeout=COMMAND_TIMEOUT)
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
                "--addons-database-url a superuser")
        if isinstance(exc, asyncpg.PostgresError):
            log.warning("addons: %s: could not %s: %s %s", where, doing, exc.sqlstate,
                        type(exc).__name__)
            return errors.ProviderFailed(
                f"{where} refused to {doing} ({exc.sqlstate} {type(exc).__name__}: "
                f"{getattr(exc, 'message', '')}); run the command again, or see the server's "
                "log")
        if isinstance(exc, TimeoutError):
            return errors.ProviderUnavailable(
                f"{where} did not answer in time (trying to {doing}): {fix}")
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return errors.ProviderUnavailable(f"cannot reach {where} ({reason}): {fix}")
