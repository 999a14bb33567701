"""SCRAM-SHA-256 verifiers (RFC 5802 section 3, RFC 7677), computed here so that an app's
password never travels to the add-on server as itself (pure).

`CREATE ROLE ... PASSWORD 'SCRAM-SHA-256$...'` stores the verifier as it is (PostgreSQL docs,
"Password Authentication"), so the statement the server may log (log_statement=ddl, or any
failed statement) holds only what its catalogue holds anyway: a salted, iterated hash from
which the password cannot be read back. The format is PostgreSQL's:
`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, each part base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

ITERATIONS = 4096   # PostgreSQL's default scram_iterations, and RFC 7677's example
SALT_BYTES = 16     # what PostgreSQL itself generates
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x21, 0x7F))


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """Hi(Normalize(password), salt, i) of RFC 5802 section 2.2: PBKDF2 with HMAC-SHA-256.

    Normalize is SASLprep (RFC 4013), which leaves printable ASCII as it is; any other password
    is refused here rather than normalised half-right (ours are URL-safe base64)."""
    if not password or not set(password) <= _PRINTABLE_ASCII:
        raise ValueError("a SCRAM password here must be printable ASCII without spaces")
    return hashlib.pbkdf2_hmac("sha256", password.encode("ascii"), salt, iterations)


def _hmac(key: bytes, text: bytes) -> bytes:
    return hmac.new(key, text, hashlib.sha256).digest()


def keys(password: str, salt: bytes, iterations: int = ITERATIONS) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of RFC 5802 section 3."""
    salted = salted_password(password, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key")


def verifier(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    """What PostgreSQL stores in pg_authid.rolpassword for `password`."""
    if len(salt) < SALT_BYTES or iterations < ITERATIONS:
        raise ValueError(f"use a salt of at least {SALT_BYTES} bytes and at least "
                         f"{ITERATIONS} iterations")
    stored_key, server_key = keys(password, salt, iterations)
    b64 = lambda raw: base64.b64encode(raw).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
