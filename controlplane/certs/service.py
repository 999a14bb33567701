"""Certificates of apps: checked, keys sealed, stored; what `certs:*` and ACME call.

    service = CertificateService(store, config, key)
    cert = await service.add("shop", chain_pem, key_pem)                    # certs:add
    cert = await service.put_certificate("shop", chain_pem, key_pem,        # ACME issuance
                                         source="auto", domain="www.shop.example")

A stored certificate reaches routers in the app's route entry (controlplane/feeds/hub.py opens
its key there, and only there). Listing and removal never touch keys.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from controlplane.certs.keybox import CertificateKey
from controlplane.certs.validate import CertificateInvalid, inspect
from controlplane.config import ControlConfig
from controlplane.store import Store
from controlplane.store.certs import new_certificate_id
from controlplane.store.models import App, Certificate, NewCertificate

SOURCES = ("uploaded", "auto")


class NoCertificateKey(Exception):
    """The control plane was started without a certificate key: nothing can be sealed."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


class CertificateService:
    def __init__(self, store: Store, config: ControlConfig, key: CertificateKey | None, *,
                 clock: Callable[[], datetime.datetime] = _utcnow) -> None:
        self.store = store
        self.config = config
        self.key = key
        self.clock = clock

    async def add(self, ident: str, chain_pem: str, key_pem: str) -> Certificate:
        """An uploaded certificate (`dynomesh certs:add`)."""
        return await self.put_certificate(ident, chain_pem, key_pem, source="uploaded")

    async def put_certificate(self, ident: str, chain_pem: str, key_pem: str, *,
                              source: str = "auto", domain: str | None = None) -> Certificate:
        """Check and store a certificate. `source="auto"` needs the `domain` it was issued
        for and replaces the app's previous auto certificate for that domain (a renewal).
        CertificateInvalid (with the reason), NoCertificateKey, or the store's errors."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        if (source == "auto") != (domain is not None):
            raise ValueError("an auto certificate names its domain; an uploaded one does not")
        if self.key is None:
            raise NoCertificateKey(
                "this control plane has no certificate key to keep private keys sealed with: "
                "start it with --certificate-key-file FILE (docs/api.md, \"Certificates\")")
        app, hosts = await self._hosts(ident)
        facts = inspect(chain_pem, key_pem, hosts, self.clock())
        if domain is not None and domain not in facts.covered:
            raise CertificateInvalid(f"the certificate does not cover {domain}")
        cert_id = new_certificate_id()
        sealed = self.key.seal(key_pem.encode(), cert_id.encode())
        return await self.store.certs.add(app.id, cert_id, NewCertificate(
            source=source, domain=domain, names=facts.names,
            not_before=_iso(facts.not_before), not_after=_iso(facts.not_after),
            issuer=facts.issuer, fingerprint=facts.fingerprint, chain=chain_pem.strip() + "\n",
            key_sealed=sealed))

    async def list(self, ident: str) -> tuple[App, list[Certificate]]:
        return await self.store.certs.list(ident)

    async def remove(self, ident: str, cert_id: str) -> Certificate:
        return await self.store.certs.remove(ident, cert_id)

    async def _hosts(self, ident: str) -> tuple[App, list[str]]:
        """The app and every host it answers to: the default one, then its custom domains."""
        app, domains = await self.store.apps.list_domains(ident)
        return app, [self.config.default_hostname(app.name), *(d.hostname for d in domains)]
