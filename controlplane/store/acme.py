"""Automatic certificates' state: the ACME account, the apps that asked, each domain's status.

The manager (controlplane/acme/manager.py) reads `work()` and records each attempt's outcome;
`publish`/`withdraw` put an HTTP-01 challenge in (and take it out of) the app's route entry,
in the same transaction as the change record, so routers get it in the next feed delta.
Wildcard domains are not managed: HTTP-01 cannot prove them (RFC 8555 §8.3; §7.1.3 needs
dns-01 for a wildcard), so they need an uploaded certificate.
"""

from __future__ import annotations

from controlplane.store.apps import require_app, touch_routes
from controlplane.store.database import Database, Transaction
from controlplane.store.models import AcmeDomain, App, now_iso

_DOMAINS = (
    "SELECT d.id AS domain_id, d.app_id, a.name AS app_name, d.hostname, x.status, x.reason, "
    "x.not_after, x.failures, x.retry_at, x.token FROM domains d "
    "JOIN apps a ON a.id = d.app_id JOIN acme_apps e ON e.app_id = d.app_id "
    "LEFT JOIN acme_domains x ON x.domain_id = d.id WHERE d.hostname NOT LIKE '*.%'")


def _domain(row) -> AcmeDomain:
    return AcmeDomain(
        row["domain_id"], row["app_id"], row["app_name"], row["hostname"],
        row["status"] or "pending", row["reason"],
        None if row["not_after"] is None else float(row["not_after"]),
        int(row["failures"] or 0), None if row["retry_at"] is None else float(row["retry_at"]),
        row["token"] is not None)


class AcmeStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- the apps that asked (`certs:auto:enable`) ------------------------------------------

    async def set_enabled(self, ident: str,
                          enabled: bool) -> tuple[App, bool, list[AcmeDomain]]:
        """Turn automatic certificates on or off; -> the app's status as this left it (as
        `status`). On again while on: failed domains are tried again at once. Off: the
        per-domain state goes; certificates issued stay until removed (`certs:remove`) or
        expired."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            if enabled:
                await tx.execute("INSERT INTO acme_apps (app_id, enabled_at) VALUES ($1, $2) "
                                 "ON CONFLICT (app_id) DO NOTHING", app.id, now_iso())
                await tx.execute("UPDATE acme_domains SET retry_at = NULL, updated_at = $2 "
                                 "WHERE app_id = $1 AND status = 'failed'", app.id, now_iso())
                # A new revision wakes the leader's certificate loop, on whichever node.
                await touch_routes(tx, app)
            else:
                had = await tx.fetchval("SELECT COUNT(*) FROM acme_domains WHERE app_id = $1 "
                                        "AND token IS NOT NULL", app.id)
                await tx.execute("DELETE FROM acme_domains WHERE app_id = $1", app.id)
                await tx.execute("DELETE FROM acme_apps WHERE app_id = $1", app.id)
                if had:
                    await touch_routes(tx, app)  # its challenges leave the route entry
            return await _status(tx, app)

    async def status(self, ident: str) -> tuple[App, bool, list[AcmeDomain]]:
        """The app, whether it asked, and its domains' state (empty when it did not)."""
        async with self._db.read() as tx:
            return await _status(tx, await require_app(tx, ident))

    async def work(self) -> list[AcmeDomain]:
        """Every managed domain of every app that asked, by app and hostname."""
        async with self._db.read() as tx:
            return [_domain(r) for r in await tx.fetch(
                f"{_DOMAINS} ORDER BY a.name, d.hostname")]

    # -- outcomes ---------------------------------------------------------------------------

    async def record(self, domain: AcmeDomain, *, status: str, reason: str | None,
                     not_after: float | None, failures: int, retry_at: float | None) -> None:
        """Where the domain stands after an attempt (ignored if the domain or the app's
        request went meanwhile)."""
        async with self._db.write() as tx:
            if not await _still_managed(tx, domain):
                return
            await tx.execute(
                "INSERT INTO acme_domains (domain_id, app_id, status, reason, not_after, "
                "failures, retry_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (domain_id) DO UPDATE SET status = excluded.status, "
                "reason = excluded.reason, not_after = excluded.not_after, "
                "failures = excluded.failures, retry_at = excluded.retry_at, "
                "updated_at = excluded.updated_at",
                domain.domain_id, domain.app_id, status, reason, not_after, failures, retry_at,
                now_iso())

    # -- HTTP-01 challenges in the route entry ----------------------------------------------

    async def publish(self, domain: AcmeDomain, token: str, key_authorization: str
                      ) -> int | None:
        """Put the challenge in the app's route entry; returns the revision that carries it
        (None if the domain is no longer managed)."""
        async with self._db.write() as tx:
            if not await _still_managed(tx, domain):
                return None
            now = now_iso()
            await tx.execute(
                "INSERT INTO acme_domains (domain_id, app_id, status, failures, token, "
                "key_authorization, updated_at) VALUES ($1, $2, 'pending', 0, $3, $4, $5) "
                "ON CONFLICT (domain_id) DO UPDATE SET token = excluded.token, "
                "key_authorization = excluded.key_authorization, updated_at = $5",
                domain.domain_id, domain.app_id, token, key_authorization, now)
            return await _touch(tx, domain)

    async def withdraw_all(self) -> int:
        """Take every challenge out of the route entries (left by an attempt that a crash or a
        lost leadership cut short); returns how many there were."""
        async with self._db.write() as tx:
            rows = await tx.fetch("SELECT DISTINCT x.app_id FROM acme_domains x "
                                  "WHERE x.token IS NOT NULL ORDER BY x.app_id")
            if not rows:
                return 0
            count = await tx.fetchval("SELECT COUNT(*) FROM acme_domains WHERE token IS NOT "
                                      "NULL")
            await tx.execute("UPDATE acme_domains SET token = NULL, key_authorization = NULL, "
                             "updated_at = $1 WHERE token IS NOT NULL", now_iso())
            for row in rows:
                await touch_routes(tx, await require_app(tx, row["app_id"]))
            return int(count)

    async def withdraw(self, domain: AcmeDomain, token: str) -> None:
        async with self._db.write() as tx:
            changed = await tx.fetchval(
                "SELECT COUNT(*) FROM acme_domains WHERE domain_id = $1 AND token = $2",
                domain.domain_id, token)
            if changed:
                await tx.execute("UPDATE acme_domains SET token = NULL, key_authorization = "
                                 "NULL, updated_at = $2 WHERE domain_id = $1",
                                 domain.domain_id, now_iso())
                await _touch(tx, domain)

    # -- the account ------------------------------------------------------------------------

    async def account_key(self, directory_url: str) -> str | None:
        """The account key (sealed) used with this CA, if one was made."""
        async with self._db.read() as tx:
            return await tx.fetchval("SELECT key_sealed FROM acme_accounts WHERE "
                                     "directory_url = $1", directory_url)

    async def save_account_key(self, directory_url: str, key_sealed: str) -> str:
        """Keep the first key stored for this CA (another node may have made one meanwhile);
        returns the one kept."""
        async with self._db.write() as tx:
            await tx.execute("INSERT INTO acme_accounts (directory_url, key_sealed, created_at) "
                             "VALUES ($1, $2, $3) ON CONFLICT (directory_url) DO NOTHING",
                             directory_url, key_sealed, now_iso())
            return await tx.fetchval("SELECT key_sealed FROM acme_accounts WHERE "
                                     "directory_url = $1", directory_url)


async def _status(tx: Transaction, app: App) -> tuple[App, bool, list[AcmeDomain]]:
    enabled = await tx.fetchrow("SELECT 1 FROM acme_apps WHERE app_id = $1", app.id)
    rows = await tx.fetch(f"{_DOMAINS} AND d.app_id = $1 ORDER BY d.hostname", app.id)
    return app, enabled is not None, [_domain(r) for r in rows]


async def _still_managed(tx: Transaction, domain: AcmeDomain) -> bool:
    return await tx.fetchrow(
        "SELECT 1 FROM domains d JOIN acme_apps e ON e.app_id = d.app_id WHERE d.id = $1",
        domain.domain_id) is not None


async def _touch(tx: Transaction, domain: AcmeDomain) -> int:
    app = await require_app(tx, domain.app_id)
    return await touch_routes(tx, app)
