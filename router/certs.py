"""The TLS listener's certificates: loaded from route entries, indexed by the hosts they serve.

Each certificate in an app's entry (`certificates`, docs/routes-format.md) becomes its own
`ssl.SSLContext`; the listener's SNI callback (router/tls.py) looks the client's server name up
here and switches the handshake to that context. The lookup is the routing table's: the exact
name first, then the wildcard of its parent domain (one label, RFC 6125 §6.4.3).

A certificate is indexed under the app's own hosts that it covers (dynomesh/certnames.py),
never under other names it carries: an app cannot take over another app's hosts by uploading a
certificate that names them. Of several certificates covering one host, the
one that expires last wins (a renewed certificate next to the old one takes over at once).

Contexts are cached by the SHA-256 of chain and key, so a feed snapshot or a delta that keeps a
certificate does not load it again; contexts no entry uses any more are dropped. Changes are made
in place between two handshakes (the loop is single-threaded): a handshake sees the old
certificate or the new, and connections already open keep theirs.

Private keys are passed to OpenSSL through an anonymous in-memory file (memfd) where Linux has
one, else a private temporary file removed at once; they are never logged or shown.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from dynomesh.certnames import covers
from router.routes import AppRoute, RouteCertificate


class CertificateError(ValueError):
    """A certificate or key the listener cannot use; the message never contains the key."""


@dataclass(frozen=True, slots=True)
class LoadedCertificate:
    names: tuple[str, ...]  # DNS names of the leaf (subjectAltName), lower case
    not_after: datetime.datetime
    context: ssl.SSLContext = field(repr=False, compare=False)


def server_context(alpn: Sequence[str]) -> ssl.SSLContext:
    """A server context with the settings every certificate shares."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.2 and 1.3 only (RFC 8996 deprecates 1.0 and 1.1); no client-initiated renegotiation,
    # a cheap way to make a server do handshake work (CVE-2011-1473).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def load_pem(chain: str, key: str, alpn: Sequence[str]) -> ssl.SSLContext:
    """A server context presenting `chain` (leaf first) with its private `key`, both PEM."""
    context = server_context(alpn)
    with _private_file((chain.rstrip() + "\n" + key.strip() + "\n").encode()) as path:
        try:
            context.load_cert_chain(path)
        except ssl.SSLError as error:
            # OpenSSL's reason ("KEY_VALUES_MISMATCH", "NO_START_LINE") names the problem and
            # never the key's bytes.
            raise CertificateError(f"OpenSSL refused the chain or key: "
                                   f"{error.reason or error}") from None
    return context


class _private_file:
    """A path to `data` readable by this process only, gone when the block ends."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.fd = -1
        self.directory: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> str:
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("dynomesh-certificate", os.MFD_CLOEXEC)
            os.write(self.fd, self.data)
            return f"/proc/self/fd/{self.fd}"
        self.directory = tempfile.TemporaryDirectory(prefix="dynomesh-cert-")  # mode 0700
        path = os.path.join(self.directory.name, "pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as file:
            file.write(self.data)
        return path

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        if self.directory is not None:
            self.directory.cleanup()


def leaf_facts(chain: str) -> tuple[tuple[str, ...], datetime.datetime]:
    """(DNS names, expiry) of the first certificate in `chain`."""
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificate(chain.encode())
    except ValueError as error:
        raise CertificateError(f"the chain's first certificate does not parse: {error}") from None
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return tuple(dict.fromkeys(n.lower().rstrip(".") for n in names)), leaf.not_valid_after_utc


def load_certificate(certificate: RouteCertificate, alpn: Sequence[str]) -> LoadedCertificate:
    names, not_after = leaf_facts(certificate.chain)
    if not names:
        raise CertificateError("the leaf certificate names no DNS host (subjectAltName)")
    return LoadedCertificate(names, not_after, load_pem(certificate.chain, certificate.key, alpn))


def _fingerprint(certificate: RouteCertificate) -> bytes:
    return hashlib.sha256(certificate.chain.encode() + b"\0" + certificate.key.encode()).digest()


class CertificateIndex:
    """Server name -> SSLContext for the TLS listener, kept in step with the routing table."""

    def __init__(self, alpn: Sequence[str], report: Callable[[str], None]) -> None:
        self.alpn = tuple(alpn)
        self._report = report  # a status line for a certificate that cannot be used
        self._exact: dict[str, ssl.SSLContext] = {}
        self._wildcard: dict[str, ssl.SSLContext] = {}  # parent domain -> context of "*.parent"
        self._keys: dict[str, list[tuple[bool, str]]] = {}  # app -> its index keys
        self._loaded: dict[bytes, LoadedCertificate] = {}  # fingerprint -> loaded
        self._used: dict[str, set[bytes]] = {}  # app -> fingerprints of its certificates

    # -- the handshake path -----------------------------------------------------------------

    def lookup(self, server_name: str) -> ssl.SSLContext | None:
        name = server_name.lower().rstrip(".")
        context = self._exact.get(name)
        if context is not None:
            return context
        parent = name.partition(".")[2]
        return self._wildcard.get(parent) if parent else None

    # -- keeping up with the table ----------------------------------------------------------

    def update(self, apps: Iterable[tuple[str, AppRoute | None]]) -> None:
        """(name, entry or None when the app left) for each app whose entry may have changed."""
        for name, route in apps:
            self._drop(name)
            if route is not None and route.certificates:
                self._add(route)
        in_use = set().union(*self._used.values()) if self._used else set()
        for fingerprint in [f for f in self._loaded if f not in in_use]:
            del self._loaded[fingerprint]

    def replace_all(self, routes: Iterable[AppRoute]) -> None:
        """A whole new table: entries that kept their certificates reuse the loaded contexts."""
        gone = [(name, None) for name in self._keys]
        self._exact.clear()
        self._wildcard.clear()
        self._keys.clear()
        self._used.clear()
        self.update([*gone, *((route.name, route) for route in routes if route.certificates)])

    def _drop(self, name: str) -> None:
        for is_wildcard, key in self._keys.pop(name, ()):
            (self._wildcard if is_wildcard else self._exact).pop(key, None)
        self._used.pop(name, None)

    def _add(self, route: AppRoute) -> None:
        usable: list[LoadedCertificate] = []
        fingerprints = set()
        for i, certificate in enumerate(route.certificates):
            fingerprint = _fingerprint(certificate)
            loaded = self._loaded.get(fingerprint)
            if loaded is None:
                try:
                    loaded = load_certificate(certificate, self.alpn)
                except CertificateError as error:
                    self._report(f"app {route.name}: certificates[{i}] not used: {error}")
                    continue
                self._loaded[fingerprint] = loaded
            fingerprints.add(fingerprint)
            usable.append(loaded)
        # The one expiring last first: it is the one a host ends up with.
        usable.sort(key=lambda loaded: loaded.not_after, reverse=True)
        keys = []
        for host in route.hosts:
            best = next((loaded for loaded in usable if covers(loaded.names, host)), None)
            if best is None:
                continue
            key = (True, host[2:]) if host.startswith("*.") else (False, host)
            (self._wildcard if key[0] else self._exact)[key[1]] = best.context
            keys.append(key)
        self._keys[route.name] = keys
        self._used[route.name] = fingerprints

    # -- inspection -------------------------------------------------------------------------

    def __len__(self) -> int:
        """Hosts with a certificate of their own."""
        return len(self._exact) + len(self._wildcard)

    @property
    def certificates(self) -> int:
        return len(self._loaded)


def self_signed(alpn: Sequence[str], name: str = "dynomesh-default.invalid") -> ssl.SSLContext:
    """The default certificate: made at start, for clients whose server name no app covers
    (they get it, then the usual 404). ECDSA P-256, a year long; `.invalid` (RFC 2606) so it
    never matches a real name."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256()))
    chain = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return load_pem(chain, key_pem, alpn)
