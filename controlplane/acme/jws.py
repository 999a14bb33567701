"""The ACME account key and the JWS every ACME POST carries (RFC 8555 §6.2).

Pure: bytes and dicts in, dicts out, so the encoding rules are unit-tested without a CA.

The account key is ECDSA P-256 (JWS `ES256`, RFC 7518 §3.4): small, and the algorithm every ACME
CA accepts. A JWS signature for ES256 is not DER: it is R and S, each left-padded to 32 bytes
and concatenated (RFC 7518 §3.4), which is what `cryptography`'s DER output is turned into here.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

_P256_BYTES = 32


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2), the encoding of every JWS part."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class AccountKey:
    """An ES256 account key: its public JWK, its thumbprint, and JWS signing."""

    __slots__ = ("_key", "jwk", "thumbprint")

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("an ACME account key must be an ECDSA P-256 key (ES256)")
        self._key = key
        numbers = key.public_key().public_numbers()
        # RFC 7518 §6.2.1: x and y, each the full 32 bytes of the coordinate.
        self.jwk = {"crv": "P-256", "kty": "EC",
                    "x": b64url(numbers.x.to_bytes(_P256_BYTES, "big")),
                    "y": b64url(numbers.y.to_bytes(_P256_BYTES, "big"))}
        self.thumbprint = jwk_thumbprint(self.jwk)

    @classmethod
    def generate(cls) -> AccountKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> AccountKey:
        key = serialization.load_pem_private_key(pem, password=None)
        return cls(key)  # type: ignore[arg-type]

    def to_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    def sign(self, payload: Any, *, url: str, nonce: str, kid: str | None = None) -> dict:
        """The flattened JWS JSON (RFC 7515 §7.2.2) of an ACME POST to `url`.

        `payload` None is a POST-as-GET (RFC 8555 §6.3: the payload is the empty string).
        Before the account exists, the protected header carries the public key (`jwk`); after,
        the account's URL (`kid`), never both (RFC 8555 §6.2)."""
        protected: dict[str, Any] = {"alg": "ES256", "nonce": nonce, "url": url}
        if kid is None:
            protected["jwk"] = self.jwk
        else:
            protected["kid"] = kid
        protected_b64 = b64url(_compact_json(protected))
        payload_b64 = "" if payload is None else b64url(_compact_json(payload))
        der = self._key.sign(f"{protected_b64}.{payload_b64}".encode("ascii"),
                             ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")
        return {"protected": protected_b64, "payload": payload_b64,
                "signature": b64url(signature)}


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace; base64url."""
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    return b64url(hashlib.sha256(_compact_json(required)).digest())


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")
