"""`dynomesh up`'s configuration: frozen, validated on construction, built by its command line."""

from __future__ import annotations

import base64
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from dynomesh.backoff import BackoffPolicy
from dynomesh.sysusers import enterable_by_others

# Where a dyno manager run as root keeps dynos when the home cannot be entered by dyno users.
ROOT_DATA_DIR = Path("/var/lib/dynomesh/dynomgr")
# Where the add-ons' PostgreSQL lives when run as root and its user cannot enter the home.
ROOT_ADDONS_POSTGRES_DIR = Path("/var/lib/dynomesh/addons-postgres")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, flag: str) -> Endpoint:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{flag}: expected HOST:PORT with a port from 1 to 65535, not {text!r}")
        return cls(host.strip("[]") or "127.0.0.1", int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """How a client on this machine reaches it."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


# In the home: the key the control plane seals apps' certificate private keys with
# (`--certificate-key-file`): 32 random bytes, base64, made on the first start.
CERTIFICATE_KEY_FILE = "certificate.key"


def make_certificate_key(path: Path) -> bool:
    """Write a new certificate key to `path` (0600) unless one is there. -> made one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        file.flush()
        os.fsync(file.fileno())
    return True


@dataclass(frozen=True)
class UpConfig:
    home: Path  # state, slugs, credentials and the router's and dyno manager's tokens
    api: Endpoint = Endpoint("127.0.0.1", 5050)
    # Apps answer at http://<app>.localhost:8080; loopback only unless asked otherwise.
    http: Endpoint = Endpoint("127.0.0.1", 8080)
    # HTTPS (`--https 127.0.0.1:8443`): the router's TLS listener, certificates from
    # `dynomesh certs:add`. Off unless asked: one fixed port would keep two platforms (or two
    # test harnesses) from running on one machine.
    https: Endpoint | None = None
    router_admin: Endpoint = Endpoint("127.0.0.1", 8081)
    dynomgr_admin: Endpoint = Endpoint("127.0.0.1", 5051)
    base_domain: str = "localhost"
    dynomgr_data_dir: Path | None = None  # None: chosen by `data_dir()`
    vm_id: str = "local"
    # How long to wait for the router's first routing table and the dyno manager's first
    # assignments before the URLs are printed anyway (the children keep trying on their own).
    ready_timeout: float = 10.0
    # A child that does not exit this long after SIGTERM is killed. The dyno manager's bound
    # covers its dynos' 30 s stop timeout; the router's its 30 s drain.
    stop_timeout: float = 45.0
    # How soon a child that died is started again: first at once, then 1, 2, 4 ... 30 s; at
    # once again after it ran for `restart_healthy_after` seconds (a fresh start).
    restart: BackoffPolicy = BackoffPolicy(1.0, 30.0, immediate_first=True)
    restart_healthy_after: float = 30.0
    # Add-ons: a PostgreSQL server to make apps' databases on (its admin URL; not in repr, for
    # its password). None: start a local one when the server is installed, unless
    # `local_addons_postgres` is off; it listens on 127.0.0.1:`addons_postgres_port` (5052:
    # next to the API's 5050 and the dyno manager's 5051, clear of a system PostgreSQL's 5432).
    addons_database_url: str | None = field(default=None, repr=False)
    local_addons_postgres: bool = True
    addons_postgres_port: int = 5052
    # Slugs in S3 (s3://BUCKET/PREFIX) instead of the home, passed on to the control plane.
    slug_store: str | None = None
    slug_store_endpoint: str | None = None
    slug_store_region: str | None = None

    def __post_init__(self) -> None:
        ports = [self.api.port, self.http.port, self.router_admin.port, self.dynomgr_admin.port]
        if self.https is not None:
            ports.append(self.https.port)
        if self.starts_addons_postgres:
            ports.append(self.addons_postgres_port)
        if len(set(ports)) != len(ports):
            raise ValueError("--api, --http, --https, --router-admin, --dynomgr-admin (and "
                             "--addons-postgres-port) need different ports")
        if not 1 <= self.addons_postgres_port <= 65535:
            raise ValueError("--addons-postgres-port: a port from 1 to 65535")
        for name in ("ready_timeout", "stop_timeout"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"--{name.replace('_', '-')} must not be negative")
        if not (self.restart.immediate_first and self.restart_healthy_after > 0):
            raise ValueError("a child's restarts begin at once and forgive a run of > 0 s")
        # Checked in full by the control plane (onebox imports no component); this catches
        # the likeliest slip, a directory, before anything starts.
        if self.slug_store is not None and not self.slug_store.startswith("s3://"):
            raise ValueError(f"--slug-store must be s3://BUCKET/PREFIX, got {self.slug_store!r} "
                             "(leave it out to keep slugs in the home directory)")
        if not re.fullmatch(r"[-\w.]{1,128}", self.vm_id, re.ASCII):
            raise ValueError(f"--vm-id: letters, digits, '-', '_' and '.', not {self.vm_id!r}")

    def slug_store_args(self) -> list[str]:
        """The control plane's slug store flags."""
        flags = {"--slug-store": self.slug_store, "--slug-store-endpoint":
                 self.slug_store_endpoint, "--slug-store-region": self.slug_store_region}
        return [arg for flag, value in flags.items() if value for arg in (flag, value)]

    @property
    def starts_addons_postgres(self) -> bool:
        """Whether `dynomesh up` would run its own add-on server (if PostgreSQL is installed)."""
        return self.addons_database_url is None and self.local_addons_postgres

    def addons_postgres_dir(self) -> Path:
        """The local add-on server's directory: in the home, unless we are root and its
        server user (`postgres`) cannot pass through the home's directories."""
        inside = self.home / "addons-postgres"
        if os.geteuid() != 0 or enterable_by_others(self.home):
            return inside
        return ROOT_ADDONS_POSTGRES_DIR

    def data_dir(self) -> Path:
        """The dyno manager's data dir: in the home, unless dynos run as their own users (the
        agent is root) and cannot pass through the home's directories."""
        if self.dynomgr_data_dir is not None:
            return self.dynomgr_data_dir
        inside = self.home / "dynomgr"
        if os.geteuid() != 0 or enterable_by_others(self.home):
            return inside
        return ROOT_DATA_DIR


def default_vm_id() -> str:
    """This machine's name as a VM id (what `ps` shows), else `local`."""
    name = re.sub(r"[^-\w.]", "-", socket.gethostname(), flags=re.ASCII)[:128]
    return name or "local"

