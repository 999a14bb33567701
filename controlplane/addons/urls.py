"""PostgreSQL connection URLs, built and taken apart without I/O.

The add-on server's admin URL carries credentials that must never reach an API answer, a CLI
line or a log: `server_location` is what is shown instead. An app's own URL (its
`DATABASE_URL`) is shown like any config var; `without_password` keeps it off a command line
(`pg:psql` hands the password to psql through its environment, as libpq reads PGPASSWORD).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432


class BadUrl(ValueError):
    """The URL is not a usable postgresql:// URL; the message says what to write instead."""


@dataclass(frozen=True)
class ServerAddress:
    """Where a PostgreSQL server answers, with no credentials."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def server_address(url: str) -> ServerAddress:
    """The host and port of a postgresql:// URL; BadUrl (naming no credentials) otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise BadUrl("the add-on database URL is malformed: use "
                     "postgresql://USER:PASSWORD@HOST:PORT/postgres") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise BadUrl("the add-on database URL must look like "
                     "postgresql://USER:PASSWORD@HOST:PORT/postgres (a host is required)")
    return ServerAddress(parts.hostname, port)


def database_url(address: ServerAddress, user: str, password: str, database: str) -> str:
    """postgresql://USER:PASSWORD@HOST:PORT/DATABASE, each part percent-encoded."""
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"postgresql://{userinfo}@{address}/{quote(database, safe='')}"


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database (the admin URL -> the new database)."""
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(database, safe="")))


def without_password(url: str) -> tuple[str, str | None]:
    """(the URL with its password taken out, the password or None)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username is not None:
        netloc = f"{quote(unquote(parts.username), safe='')}@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


def masked(url: str) -> str:
    """The URL with its password replaced by `***` (for places a secret may not go)."""
    bare, password = without_password(url)
    if password is None:
        return url
    parts = urlsplit(bare)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
