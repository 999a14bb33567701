"""ACME's objects as plain values (RFC 8555 §7.1): what the client reads from the CA and what it
sends, with no I/O, so every rule here is a unit test.

- `key_authorization(token, thumbprint)`: what the HTTP-01 responder answers (§8.1, §8.3);
- `make_csr(domain)`: a new certificate key and its CSR for `finalize` (§7.4);
- `OrderStatus`/`AuthzStatus`: the states of §7.1.6, and what the client does in each;
- `Problem`: a CA's problem document (RFC 7807, §6.7), the reason a user sees in `certs`;
- `retry_after(value, now)`: the wait a CA asks for (RFC 9110 §10.2.3) while polling (§7.5.1).
"""

from __future__ import annotations

import email.utils
import enum
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controlplane.acme.jws import b64url

# RFC 8555 §8.3: the token is base64url; refusing anything else keeps the path the router
# matches (and the feed field) free of '/', '?', '..'.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,256}")
ERROR_PREFIX = "urn:ietf:params:acme:error:"


class ProtocolError(Exception):
    """The CA sent something RFC 8555 does not allow (a bug or a hostile server)."""


def valid_token(token: Any) -> bool:
    return isinstance(token, str) and _TOKEN.fullmatch(token) is not None


def key_authorization(token: str, thumbprint: str) -> str:
    """RFC 8555 §8.1: `token || '.' || base64url(JWK thumbprint)`."""
    if not valid_token(token):
        raise ProtocolError(f"challenge token {token!r} is not base64url (RFC 8555 §8.3)")
    return f"{token}.{thumbprint}"


def make_csr(domain: str) -> tuple[bytes, bytes]:
    """A new P-256 certificate key and a CSR naming `domain` in its SAN (RFC 8555 §7.4:
    the CA takes the names from the SANs); returns (CSR as DER, key as PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return csr.public_bytes(serialization.Encoding.DER), key_pem


def csr_field(csr_der: bytes) -> str:
    """The `csr` member of a finalize request: base64url DER (RFC 8555 §7.4)."""
    return b64url(csr_der)


class OrderStatus(enum.Enum):
    """RFC 8555 §7.1.6: pending -> ready -> processing -> valid; or invalid."""

    PENDING = "pending"  # authorizations to satisfy
    READY = "ready"  # all valid: finalize with a CSR
    PROCESSING = "processing"  # the CA is issuing: poll
    VALID = "valid"  # the certificate is at `certificate`
    INVALID = "invalid"  # failed for good (an authorization failed, or it expired)


class AuthzStatus(enum.Enum):
    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


def status_of(kind: type[enum.Enum], body: dict, what: str) -> Any:
    raw = body.get("status")
    try:
        return kind(raw)
    except ValueError:
        raise ProtocolError(f"the CA sent {what} with an unknown status {raw!r}") from None


@dataclass(frozen=True)
class Order:
    """An order as the CA last showed it (RFC 8555 §7.1.3)."""

    url: str
    status: OrderStatus
    authorizations: tuple[str, ...]
    finalize: str
    certificate: str | None
    error: Problem | None

    @classmethod
    def parse(cls, url: str, body: Any) -> Order:
        if not isinstance(body, dict):
            raise ProtocolError("the CA sent an order that is not a JSON object")
        authorizations = body.get("authorizations")
        finalize = body.get("finalize")
        if (not isinstance(authorizations, list)
                or not all(isinstance(a, str) for a in authorizations)
                or not isinstance(finalize, str)):
            raise ProtocolError("the CA sent an order without authorizations or finalize URL")
        certificate = body.get("certificate")
        error = body.get("error")
        return cls(url, status_of(OrderStatus, body, "an order"), tuple(authorizations),
                   finalize, certificate if isinstance(certificate, str) else None,
                   Problem.parse(error) if isinstance(error, dict) else None)


@dataclass(frozen=True)
class Challenge:
    url: str
    token: str
    status: str
    error: Problem | None


@dataclass(frozen=True)
class Authorization:
    """An authorization (RFC 8555 §7.1.4), with its HTTP-01 challenge if it offers one."""

    url: str
    domain: str
    status: AuthzStatus
    http01: Challenge | None

    @classmethod
    def parse(cls, url: str, body: Any) -> Authorization:
        if not isinstance(body, dict):
            raise ProtocolError("the CA sent an authorization that is not a JSON object")
        identifier = body.get("identifier") or {}
        http01 = None
        for challenge in body.get("challenges") or ():
            if isinstance(challenge, dict) and challenge.get("type") == "http-01":
                token = challenge.get("token")
                if not valid_token(token) or not isinstance(challenge.get("url"), str):
                    raise ProtocolError("the CA sent an http-01 challenge without a valid "
                                        "token or URL")
                error = challenge.get("error")
                http01 = Challenge(challenge["url"], token, str(challenge.get("status")),
                                   Problem.parse(error) if isinstance(error, dict) else None)
        return cls(url, str(identifier.get("value", "")),
                   status_of(AuthzStatus, body, "an authorization"), http01)


@dataclass(frozen=True)
class Problem:
    """A problem document (RFC 7807; ACME's types are `urn:ietf:params:acme:error:*`)."""

    type: str
    detail: str
    status: int | None = None

    @classmethod
    def parse(cls, body: Any, status: int | None = None) -> Problem:
        if not isinstance(body, dict):
            return cls("about:blank", "the CA answered without a problem document", status)
        detail = body.get("detail")
        subproblems = [s.get("detail") for s in body.get("subproblems") or ()
                       if isinstance(s, dict) and isinstance(s.get("detail"), str)]
        text = detail if isinstance(detail, str) and detail else "no detail given"
        if subproblems:
            text = f"{text} ({'; '.join(subproblems)})"
        kind = body.get("type")
        return cls(kind if isinstance(kind, str) else "about:blank", text,
                   status if status is not None else _int_or_none(body.get("status")))

    @property
    def short_type(self) -> str:
        """`badNonce` for `urn:ietf:params:acme:error:badNonce`."""
        return self.type.removeprefix(ERROR_PREFIX)

    def __str__(self) -> str:
        return f"{self.short_type}: {self.detail}"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def retry_after(value: str | None, now: float, *, default: float, longest: float) -> float:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP date, RFC 9110
    §10.2.3), within [0, longest]; `default` when absent or unreadable."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return min(float(value), longest)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return default
    return min(max(0.0, when - now), longest)


class Step(enum.Enum):
    """What the client does next with an order, from its status (RFC 8555 §7.4, Figure 3)."""

    AUTHORIZE = "authorize"  # prove control of each identifier
    FINALIZE = "finalize"  # send the CSR
    WAIT = "wait"  # the CA is working: poll
    DOWNLOAD = "download"  # fetch the certificate
    FAIL = "fail"  # the order is dead; its error is the reason


def next_step(order: Order, *, finalized: bool) -> Step:
    """`finalized`: this client already sent its CSR. An order that is `valid` before that
    belongs to a CSR (and key) this client does not have, so it cannot be used."""
    status = order.status
    if status is OrderStatus.PENDING:
        return Step.WAIT if finalized else Step.AUTHORIZE
    if status is OrderStatus.READY:
        return Step.WAIT if finalized else Step.FINALIZE
    if status is OrderStatus.PROCESSING:
        return Step.WAIT
    if status is OrderStatus.VALID:
        if not finalized:
            raise ProtocolError("the CA sent a valid order before this client finalized it")
        if order.certificate is None:
            raise ProtocolError("the CA sent a valid order without a certificate URL")
        return Step.DOWNLOAD
    return Step.FAIL


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate chain the CA issued for `domain`, with the key it certifies."""

    domain: str
    chain_pem: str  # leaf first
    key_pem: bytes
    not_before: float  # Unix seconds
    not_after: float


def check_issued(domain: str, chain_pem: str, key_pem: bytes) -> IssuedCertificate:
    """The chain the CA sent, checked: its leaf names `domain` and certifies our key."""
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode("ascii"))
    except ValueError as exc:
        raise ProtocolError(f"the CA's certificate chain does not parse: {exc}") from None
    leaf = chain[0]
    try:
        names = leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if domain not in names:
        raise ProtocolError(f"the CA's certificate does not name {domain} (it names "
                            f"{', '.join(names) or 'nothing'})")
    key = serialization.load_pem_private_key(key_pem, password=None)
    if leaf.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo) != \
            key.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ProtocolError("the CA's certificate is not for the key this client sent")
    return IssuedCertificate(domain, chain_pem, key_pem,
                             leaf.not_valid_before_utc.timestamp(),
                             leaf.not_valid_after_utc.timestamp())
