"""Checks an uploaded certificate and key before they are stored (pure; `cryptography`).

Each refusal names the problem and what to do about it, and never quotes the key. What is
checked, in order: the chain parses as PEM certificates (leaf first), the key parses and is not
protected by a passphrase, the key belongs to the leaf, each certificate is issued by the next
one, the leaf has not expired, and its DNS names cover at least one of the app's hosts
(dynomesh/certnames.py) — a certificate that serves none of them would never be presented.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from dynomesh.certnames import covers


class CertificateInvalid(ValueError):
    """An upload refused, with a message for the user (never containing the key)."""


@dataclass(frozen=True)
class CertificateFacts:
    names: tuple[str, ...]  # the leaf's DNS names, lower case, as listed
    not_before: datetime.datetime
    not_after: datetime.datetime
    issuer: str  # the leaf issuer's RFC 4514 name
    fingerprint: str  # SHA-256 of the leaf (DER), hex
    chain_length: int
    covered: tuple[str, ...]  # the app's hosts it serves


def inspect(chain_pem: str, key_pem: str, hosts: Sequence[str],
            now: datetime.datetime) -> CertificateFacts:
    """The facts of a certificate fit for an app with these `hosts`; CertificateInvalid if not."""
    chain = _chain(chain_pem)
    key = _key(key_pem)
    leaf = chain[0]
    if _public(key.public_key()) != _public(leaf.public_key()):
        raise CertificateInvalid(
            "the private key does not belong to the certificate (the first one in the chain "
            "file): give the key the certificate was issued for")
    _check_order(chain)
    if leaf.not_valid_after_utc <= now:
        raise CertificateInvalid(f"the certificate expired on "
                                 f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: renew it")
    names = _dns_names(leaf)
    if not names:
        raise CertificateInvalid("the certificate names no DNS host (no subjectAltName DNS "
                                 "names): issue it for the app's domain")
    covered = tuple(host for host in hosts if covers(names, host))
    if not covered:
        raise CertificateInvalid(
            f"the certificate's names ({', '.join(names)}) cover none of the app's hosts "
            f"({', '.join(hosts)}): add the domain first (dynomesh domains:add NAME --app APP)")
    return CertificateFacts(
        names=names, not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
        issuer=leaf.issuer.rfc4514_string(),
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        chain_length=len(chain), covered=covered)


def _chain(chain_pem: str) -> list[x509.Certificate]:
    if "PRIVATE KEY-----" in chain_pem:
        raise CertificateInvalid("the certificate file holds a private key: give the "
                                 "certificate chain first, then the key (certs:add CERT KEY)")
    if "-----BEGIN CERTIFICATE-----" not in chain_pem:
        raise CertificateInvalid("no certificate in the certificate file (expected PEM: "
                                 "-----BEGIN CERTIFICATE-----)")
    try:
        return x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError as error:
        raise CertificateInvalid(f"the certificate chain does not parse: {error}") from None


def _key(key_pem: str):
    if "PRIVATE KEY-----" not in key_pem:
        raise CertificateInvalid("no private key in the key file (expected PEM: -----BEGIN "
                                 "PRIVATE KEY----- or an RSA/EC private key)")
    try:
        return serialization.load_pem_private_key(key_pem.encode(), password=None)
    except TypeError:
        raise CertificateInvalid("the private key is protected by a passphrase: store it "
                                 "without one (openssl pkey -in KEY -out PLAIN.key)") from None
    except (ValueError, serialization.UnsupportedAlgorithm) as error:
        # cryptography's messages describe the format, never the key's bytes.
        raise CertificateInvalid(f"the private key does not parse: {error}") from None


def _public(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_order(chain: list[x509.Certificate]) -> None:
    """Each certificate is signed by the next (leaf first): what clients need sent."""
    for position, (child, parent) in enumerate(zip(chain, chain[1:]), start=1):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise CertificateInvalid(
                f"certificate {position} of the chain is not issued by certificate "
                f"{position + 1}: put the leaf first, then each intermediate after the one it "
                f"was issued by") from None


def _dns_names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(dict.fromkeys(name.lower().rstrip(".")
                               for name in san.value.get_values_for_type(x509.DNSName)))
