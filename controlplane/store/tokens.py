"""API tokens: high-entropy secrets, stored only as their SHA-256 digest.

A token is 32 random bytes (256 bits), so a plain SHA-256 is enough to make a stolen
database useless for logging in (there is nothing to brute-force, unlike a password), and the
lookup stays one indexed query. The candidate digest is compared with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from controlplane.store import errors
from controlplane.store.database import Database
from controlplane.store.models import IssuedToken, Role, Token, now_iso

PREFIX = "dmt_"  # makes a leaked token easy to recognise in logs and secret scanners


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


class TokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, role: Role, *, vm_id: str | None = None,
                     description: str = "") -> IssuedToken:
        if (role is Role.DYNOMGR) != (vm_id is not None):
            raise errors.Invalid("a dynomgr token needs a VM id, and only a dynomgr token has one")
        secret = new_secret()
        token = Token(str(uuid.uuid4()), role, vm_id, description, now_iso())
        async with self._db.write() as tx:
            await tx.execute(
                "INSERT INTO tokens (id, role, vm_id, digest, description, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)", token.id, role.value, vm_id, digest(secret),
                description, token.created_at)
        return IssuedToken(token, secret)

    async def authenticate(self, secret: str) -> Token | None:
        """The token whose secret this is, or None."""
        candidate = digest(secret)
        async with self._db.read() as tx:
            row = await tx.fetchrow("SELECT * FROM tokens WHERE digest = $1", candidate)
        if row is None or not hmac.compare_digest(row["digest"], candidate):
            return None
        return Token.from_row(row)

    async def list(self) -> list[Token]:
        async with self._db.read() as tx:
            rows = await tx.fetch("SELECT * FROM tokens ORDER BY created_at, id")
        return [Token.from_row(r) for r in rows]

    async def revoke(self, token_id: str) -> Token:
        async with self._db.write() as tx:
            row = await tx.fetchrow("SELECT * FROM tokens WHERE id = $1", token_id)
            if row is None:
                raise errors.NotFound(f"token {token_id!r} not found: `dynomesh tokens` lists them")
            await tx.execute("DELETE FROM tokens WHERE id = $1", token_id)
        return Token.from_row(row)
