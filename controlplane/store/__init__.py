"""The control plane's durable state: one `Store` over one `Database` (SQLite or PostgreSQL).

    store = await Store.open("postgresql://...")  # or None for SQLite under the home dir
    app = await store.apps.create("hello")
    await store.close()

`store.apps`, `store.releases`, `store.tokens`, `store.vms`, `store.dynos`, `store.logs`,
`store.drains` (log drains, their delivery leases), `store.builds` (source built into slugs),
`store.nodes` (control nodes, scheduler leadership), `store.fleet` (a scheduling pass),
`store.addons` (add-ons attached to apps), `store.oneoffs` (one-off dynos: `dynomesh run`,
release phases), `store.pool` (the VMs the pool launched, its limits and errors),
`store.certs` (apps' TLS certificates, keys sealed), `store.acme` (automatic
certificates: the ACME account, the apps that asked, each domain's state),
`store.router_settings` (per-app router settings, `config:router`) and
`store.affinity_keys` (the routers' session affinity signing keys)
group the operations by concept; each runs in its own transaction (`store.fleet.scheduling`
hands out one pass's) and raises only `store.errors` classes. `store/feeds.py` has the feeds'
reads, which run in the caller's read transaction.
"""

from __future__ import annotations

from pathlib import Path

from controlplane.store import errors
from controlplane.store.acme import AcmeStore
from controlplane.store.addons import AddonStore
from controlplane.store.affinity import AffinityKeyStore
from controlplane.store.apps import FEATURES, AppStore
from controlplane.store.builds import BuildStore
from controlplane.store.certs import CertificateStore
from controlplane.store.database import DEFAULT_HISTORY, Database
from controlplane.store.drains import DrainStore
from controlplane.store.dynos import DynoStore
from controlplane.store.fleet import FleetStore
from controlplane.store.logs import LogStore
from controlplane.store.migrations import migrate
from controlplane.store.nodes import NodeStore
from controlplane.store.oneoffs import OneOffStore
from controlplane.store.pool import PoolStore
from controlplane.store.releases import ReleaseStore
from controlplane.store.revision import ChangeLog, Feed
from controlplane.store.routersettings import RouterSettingsStore
from controlplane.store.tokens import TokenStore
from controlplane.store.vms import VmStore

__all__ = ["Store", "open_database", "errors", "Feed", "ChangeLog", "FEATURES"]

SQLITE_FILE = "control.db"


def open_database(url: str | None, *, home: Path, history: int = DEFAULT_HISTORY) -> Database:
    """The backend for `url`: None or sqlite:PATH for SQLite, postgresql://... for PostgreSQL."""
    if url is None:
        from controlplane.store.sqlite import SqliteDatabase
        return SqliteDatabase(home / SQLITE_FILE, history=history)
    if url.startswith(("postgresql://", "postgres://")):
        from controlplane.store.postgres import PostgresDatabase
        return PostgresDatabase(url, history=history)
    if url.startswith("sqlite:"):
        from controlplane.store.sqlite import SqliteDatabase
        path = url.removeprefix("sqlite:").removeprefix("//")
        return SqliteDatabase(Path(path).expanduser(), history=history)
    raise ValueError(f"unsupported database URL {url!r}: use postgresql://... or sqlite:PATH")


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.apps = AppStore(db)
        self.releases = ReleaseStore(db)
        self.tokens = TokenStore(db)
        self.vms = VmStore(db)
        self.dynos = DynoStore(db)
        self.logs = LogStore(db)
        self.drains = DrainStore(db)
        self.nodes = NodeStore(db)
        self.fleet = FleetStore(db)
        self.addons = AddonStore(db)
        self.oneoffs = OneOffStore(db)
        self.builds = BuildStore(db)
        self.pool = PoolStore(db)
        self.certs = CertificateStore(db)
        self.acme = AcmeStore(db)
        self.router_settings = RouterSettingsStore(db)
        self.affinity_keys = AffinityKeyStore(db)

    @classmethod
    async def open(cls, db: Database) -> "Store":
        """Connect, apply pending migrations, and learn the current revision."""
        await db.open()
        try:
            await migrate(db)
            store = cls(db)
            await db.signal.advance(await store.revision())
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self.db.close()

    async def revision(self) -> int:
        async with self.db.read() as tx:
            return await tx.current_revision()

    async def changes_since(self, feed: Feed, since: int) -> ChangeLog:
        async with self.db.read() as tx:
            return await tx.changes_since(feed, since)
