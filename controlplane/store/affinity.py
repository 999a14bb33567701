"""Session affinity signing keys: the secrets every router signs and checks cookies with.

Routers pin a client to a dyno with a cookie signed by HMAC-SHA256 (router/affinity.py); for a
cookie from one router to be honoured by every other, they share the keys, which come to them
in the route feed (docs/feeds.md) and nowhere else: no API response, no CLI output and no log
line carries a secret, only key ids and ages.

There are at most `KEPT` keys: the newest signs, the one before it still verifies, so a
rotation breaks no live session (routers sign a cookie of the previous key again with the new
one on its next response). Rotating twice within one browser session ends the sessions that
made no request in between: they are balanced again, as after a dyno restart.

Every change is recorded under `KEYS_CHANGE` in the routes feed's change log: a name no app
can have, so the route hub tells it from the apps (controlplane/feeds/hub.py).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from datetime import datetime, timezone

from controlplane.store.database import Database, Transaction
from controlplane.store.models import AffinityKey, now_iso
from controlplane.store.revision import Feed

KEPT = 2  # the signing key and the previous one
KEYS_CHANGE = ":affinity-keys"  # the change-log key (app names cannot hold ":")
SECRET_BYTES = 32  # HMAC-SHA256's block-sized key is 64; 32 random bytes is 256 bits


def new_key(generation: int, created_at: str) -> AffinityKey:
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=")
    return AffinityKey(f"ak{generation}-{secrets.token_hex(3)}", secret.decode("ascii"),
                       generation, created_at)


def _age(key: AffinityKey, now: datetime) -> float:
    """Seconds since `key` was made (its time is ISO 8601 UTC to the second)."""
    made = datetime.strptime(key.created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return (now - made).total_seconds()


async def signing_keys(tx: Transaction) -> list[AffinityKey]:
    """The keys, newest first (the route feed's `affinity_keys`), in the caller's read."""
    rows = await tx.fetch("SELECT * FROM affinity_keys ORDER BY generation DESC")
    return [AffinityKey.from_row(r) for r in rows]


class AffinityKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure(self) -> AffinityKey | None:
        """Make the first key if there is none (a control node's start); -> the key made."""
        async with self._db.read() as tx:
            if await tx.fetchval("SELECT COUNT(*) FROM affinity_keys"):
                return None
        async with self._db.write() as tx:  # another node may have made one meanwhile
            if await tx.fetchval("SELECT COUNT(*) FROM affinity_keys"):
                return None
            return await self._add(tx)

    async def rotate(self) -> tuple[AffinityKey, list[AffinityKey]]:
        """A new signing key; the previous one verifies; older ones are retired.
        -> (the new key, the keys retired)."""
        async with self._db.write() as tx:
            return await self._rotate(tx)

    async def rotate_if_due(self, due: Callable[[float | None], bool], now: datetime
                            ) -> tuple[AffinityKey | None, float | None]:
        """Rotate if `due(age of the signing key)` (None: no key) says so, checked again in
        the write transaction, so that nodes looking at once rotate once.
        -> (the new key or None, the signing key's age in seconds after this)."""
        async with self._db.read() as tx:
            keys = await signing_keys(tx)
        age = _age(keys[0], now) if keys else None
        if not due(age):
            return None, age
        async with self._db.write() as tx:
            keys = await signing_keys(tx)
            age = _age(keys[0], now) if keys else None
            if not due(age):
                return None, age  # another node rotated meanwhile
            key, _ = await self._rotate(tx)
        return key, 0.0

    async def _rotate(self, tx: Transaction) -> tuple[AffinityKey, list[AffinityKey]]:
        key = await self._add(tx)
        retired = (await signing_keys(tx))[KEPT:]
        for old in retired:
            await tx.execute("DELETE FROM affinity_keys WHERE id = $1", old.id)
        return key, retired

    async def list(self) -> list[AffinityKey]:
        async with self._db.read() as tx:
            return await signing_keys(tx)

    @staticmethod
    async def _add(tx: Transaction) -> AffinityKey:
        # The write transaction holds the revision row's lock: generations never collide.
        newest = await tx.fetchval("SELECT MAX(generation) FROM affinity_keys")
        key = new_key(int(newest or 0) + 1, now_iso())
        await tx.execute("INSERT INTO affinity_keys (id, secret, generation, created_at) "
                         "VALUES ($1, $2, $3, $4)", key.id, key.secret, key.generation,
                         key.created_at)
        await tx.record_change(Feed.ROUTES, KEYS_CHANGE)
        return key
