"""Private keys at rest: sealed with AES-256-GCM under the control plane's certificate key.

The certificate key is 32 random bytes, base64 in a file the operator keeps
(`--certificate-key-file`, or `$DYNOMESH_CERTIFICATE_KEY_FILE`; `dynomesh up` makes one in its
home). Every control node of one store needs the same file; without it the certificates already
stored cannot be sent to routers, and a lost file means uploading them again (docs/api.md,
"Certificates").

A sealed value is `v1.<key id>.<base64(nonce | ciphertext | tag)>`: the key id (the first 8 hex
of the key's SHA-256) says which key sealed it, so a node started with another key says so
instead of failing obscurely; the certificate's id is the associated data, so a sealed key
cannot be moved to another certificate's row. A 96-bit random nonce per seal (NIST SP 800-38D
§8.2.2: fine for far fewer than 2^32 seals under one key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_NONCE = 12
_VERSION = "v1"


class KeyFileError(ValueError):
    """A certificate key file that cannot be used; the message names the file and the fix."""


class SealError(ValueError):
    """A sealed value this key cannot open (another key, or damaged)."""


class CertificateKey:
    """Seals and opens private keys. Never printed: its repr names only the key id."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"a certificate key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"<CertificateKey {self.key_id}>"

    @classmethod
    def load(cls, path: Path) -> CertificateKey:
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise KeyFileError(f"certificate key file {path}: no such file (make one: "
                               f"(umask 077; head -c 32 /dev/urandom | base64 > {path}))"
                               ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise KeyFileError(f"certificate key file {path}: cannot read it ({error})") from None
        try:
            key = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise KeyFileError(f"certificate key file {path}: not base64 (it holds "
                               f"{KEY_BYTES} random bytes, base64-encoded)") from None
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"certificate key file {path}: {len(key)} bytes, not "
                               f"{KEY_BYTES}")
        return cls(key)

    def seal(self, plaintext: bytes, associated: bytes) -> str:
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._aead.encrypt(nonce, plaintext, associated)
        return f"{_VERSION}.{self.key_id}.{base64.b64encode(sealed).decode()}"

    def open(self, sealed: str, associated: bytes) -> bytes:
        version, _, rest = sealed.partition(".")
        key_id, _, body = rest.partition(".")
        if version != _VERSION or not body:
            raise SealError("not a sealed value of this version")
        if key_id != self.key_id:
            raise SealError(f"sealed under certificate key {key_id}, this control plane has "
                            f"{self.key_id}: start it with the key file that was used")
        try:
            raw = base64.b64decode(body, validate=True)
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], associated)
        except (binascii.Error, InvalidTag):
            raise SealError("the sealed key is damaged or belongs to another row") from None
