"""Apps' TLS certificates: stored with their keys sealed, listed without them.

The store never sees a private key in the clear: `NewCertificate.key_sealed` comes sealed
(controlplane/certs/keybox.py) and only the route feed reads it back (store/feeds.py). Every
change records the app's route entry as changed, so routers get the new certificate set in the
next feed delta.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from controlplane.store import errors
from controlplane.store.apps import require_app, touch_routes
from controlplane.store.database import Database
from controlplane.store.models import App, Certificate, NewCertificate

_LISTED = ("id, app_id, source, domain, names, not_before, not_after, issuer, fingerprint, "
           "created_at")


def new_certificate_id() -> str:
    """The id a certificate will have: its key is sealed with it as associated data, so it is
    chosen before the row is written."""
    return str(uuid.uuid4())


class CertificateStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(self, ident: str) -> tuple[App, list[Certificate]]:
        """The app's certificates, oldest first."""
        async with self._db.read() as tx:
            app = await require_app(tx, ident)
            rows = await tx.fetch(f"SELECT {_LISTED} FROM certificates WHERE app_id = $1 "
                                  "ORDER BY created_at, id", app.id)
            return app, [Certificate.from_row(r) for r in rows]

    async def add(self, ident: str, cert_id: str, new: NewCertificate) -> Certificate:
        """Store a certificate. An "auto" one replaces the app's previous "auto" one for the
        same domain (a renewal), in the same transaction: routers never see neither."""
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            if new.source == "auto":
                await tx.execute("DELETE FROM certificates WHERE app_id = $1 AND source = "
                                 "'auto' AND domain = $2", app.id, new.domain)
            elif await tx.fetchrow("SELECT 1 FROM certificates WHERE app_id = $1 AND "
                                   "fingerprint = $2 AND source = 'uploaded'",
                                   app.id, new.fingerprint):
                raise errors.Conflict(f"this certificate is already on {app.name} "
                                      f"(`dynomesh certs --app {app.name}` lists them)")
            # Microseconds: listings and route entries keep the order certificates came in.
            created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            await tx.execute(
                "INSERT INTO certificates (id, app_id, source, domain, names, not_before, "
                "not_after, issuer, fingerprint, chain, key_sealed, created_at) VALUES ($1, "
                "$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                cert_id, app.id, new.source, new.domain, json.dumps(list(new.names)),
                new.not_before, new.not_after, new.issuer, new.fingerprint, new.chain,
                new.key_sealed, created)
            await touch_routes(tx, app)
        return Certificate(cert_id, app.id, new.source, new.domain, new.names, new.not_before,
                           new.not_after, new.issuer, new.fingerprint, created)

    async def remove(self, ident: str, cert_id: str) -> Certificate:
        async with self._db.write() as tx:
            app = await require_app(tx, ident)
            row = await tx.fetchrow(f"SELECT {_LISTED} FROM certificates WHERE app_id = $1 "
                                    "AND id = $2", app.id, cert_id)
            if row is None:
                raise errors.NotFound(f"certificate {cert_id!r} is not on app {app.name!r}: "
                                      f"`dynomesh certs --app {app.name}` lists them")
            await tx.execute("DELETE FROM certificates WHERE id = $1", cert_id)
            await touch_routes(tx, app)
        return Certificate.from_row(row)
