"""The control plane's certificate loop: keeps a certificate for every custom domain of the apps
that asked (`certs:auto:enable`), like Heroku's Automated Certificate Management.

It runs on the scheduling node only (the leader: one node talks to the CA, so two nodes never
order the same certificate), wakes when the store's revision moves (an app asked, a domain was
added) and when the next renewal or retry is due, and attempts at most `per_pass` domains per
pass. Each attempt is issuance.py's; the outcome goes to the store per domain (`pending`,
`issued`, `failed: <reason>`), the certificate through the certificate service (the `tls`
part: checked, key sealed, sent to routers in the route feed).

HTTP-01 responses go into the app's route entry (store.acme.publish); the CA is told to look
only once every router has been sent that revision (or `publish_wait` passed: a router that is
away cannot answer anyway, and the CA's refusal is then the truth to show).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable

from controlplane.aio import lead_while_leading
from controlplane.acme.client import AcmeClient, AcmeError, AcmeUnavailable, ca_ssl_context
from controlplane.acme.issuance import issue
from controlplane.acme.jws import AccountKey
from controlplane.acme.protocol import ProtocolError
from controlplane.acme.settings import AcmeSettings
from controlplane.certs.keybox import CertificateKey, SealError
from controlplane.certs.service import CertificateService, NoCertificateKey
from controlplane.certs.validate import CertificateInvalid
from controlplane.feeds.progress import RouteFollowers, fleet_delivered
from controlplane.store import Store, errors
from controlplane.store.models import AcmeDomain
from dynomesh.backoff import BackoffPolicy

log = logging.getLogger("dynomesh.acme")

# A pass at most this often (revisions move with every deploy), at least this often.
MIN_PASS_INTERVAL = 1.0
MAX_PASS_INTERVAL = 3600.0
# The store away: try again after these.
STORE_RETRY = BackoffPolicy(base=1.0, cap=30.0, jitter=0.2)


class CertificateManager:
    def __init__(self, store: Store, certs: CertificateService, key: CertificateKey | None,
                 settings: AcmeSettings, *, leading: asyncio.Event, followers: RouteFollowers,
                 node_id: str, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self._store = store
        self._certs = certs
        self._key = key
        self.settings = settings
        self._leading = leading
        self._followers = followers
        self._node_id = node_id
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        followers.on_change(self._progress.set)
        self._account: AccountKey | None = None
        self.passes = 0

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        await lead_while_leading(self._leading, self._lead, signal=self._store.db.signal,
                                 wake=self._wake, name="acme-wake")

    async def _lead(self) -> None:
        retry = STORE_RETRY.start(self._rng)
        stale = True  # challenges an attempt cut short (a crash, a lost lead) may remain
        while self._leading.is_set():
            self._wake.clear()
            try:
                if stale:
                    if withdrawn := await self._store.acme.withdraw_all():
                        log.info("acme: withdrew %d challenge(s) left by an earlier attempt",
                                 withdrawn)
                    stale = False
                wake_at = await self.run_pass()
                retry.reset()
                timeout = min(MAX_PASS_INTERVAL, max(0.0, wake_at - self._clock()))
            except (errors.Unavailable, errors.Busy) as exc:
                timeout = retry.next_delay()
                log.warning("acme: the store is unavailable (%s); trying again in %.0fs", exc,
                            timeout)
                await asyncio.sleep(timeout)
                continue
            if timeout > 0:
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            await asyncio.sleep(MIN_PASS_INTERVAL)  # revisions move often: one pass a second

    async def run_pass(self) -> float:
        """Attempt the domains that are due; returns when the next one is."""
        self.passes += 1
        policy = self.settings.policy
        now = self._clock()
        domains = await self._store.acme.work()
        due = [d for d in domains if policy.due_at(d) <= now]
        later = [policy.due_at(d) for d in domains if policy.due_at(d) > now]
        if due:
            await self._attempt(due[:self.settings.per_pass])
            if len(due) > self.settings.per_pass:
                return self._clock()
        return min(later, default=math.inf)

    async def _attempt(self, domains: list[AcmeDomain]) -> None:
        try:
            account = await self._account_key()
            async with AcmeClient(self.settings.directory_url, account,
                                  ssl_context=ca_ssl_context(self.settings.ca_file),
                                  settings=self.settings.poll, clock=self._clock) as client:
                await client.register()
                for domain in domains:
                    await self._obtain(client, domain)
        except (AcmeError, AcmeUnavailable, ProtocolError, NoCertificateKey, SealError) as exc:
            # Nothing could be asked of the CA (no account): every domain due failed so.
            reason = _reason(exc)
            log.warning("acme: cannot reach the CA's account: %s", reason)
            for domain in domains:
                await self._failed(domain, reason)

    async def _obtain(self, client: AcmeClient, domain: AcmeDomain) -> None:
        log.info("acme: %s (%s): obtaining a certificate", domain.hostname, domain.app_name)
        try:
            issued = await issue(client, domain.hostname, _Board(self, domain))
            await self._certs.put_certificate(domain.app_id, issued.chain_pem,
                                              issued.key_pem.decode("ascii"), source="auto",
                                              domain=domain.hostname)
        except (AcmeError, AcmeUnavailable, ProtocolError, CertificateInvalid,
                NoCertificateKey) as exc:
            await self._failed(domain, _reason(exc))
            return
        except errors.NotFound:
            return  # the app or the domain went meanwhile
        await self._store.acme.record(domain, status="issued", reason=None,
                                      not_after=issued.not_after, failures=0, retry_at=None)
        log.info("acme: %s (%s): certificate issued, valid until %s", domain.hostname,
                 domain.app_name, time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                time.gmtime(issued.not_after)))

    async def _failed(self, domain: AcmeDomain, reason: str) -> None:
        failures, retry_at = self.settings.policy.after_failure(domain.failures, self._clock(),
                                                                self._rng)
        log.warning("acme: %s (%s): failed (%d in a row): %s; trying again in %.0fs",
                    domain.hostname, domain.app_name, failures, reason,
                    retry_at - self._clock())
        await self._store.acme.record(domain, status="failed", reason=reason,
                                      not_after=domain.not_after, failures=failures,
                                      retry_at=retry_at)

    # -- the account key --------------------------------------------------------------------

    async def _account_key(self) -> AccountKey:
        """The account key for this CA, made and stored (sealed) on first use."""
        if self._account is not None:
            return self._account
        if self._key is None:
            raise NoCertificateKey(
                "this control plane has no certificate key to keep the ACME account key "
                "sealed with: start it with --certificate-key-file FILE")
        url = self.settings.directory_url
        associated = b"acme-account " + url.encode()
        sealed = await self._store.acme.account_key(url)
        if sealed is None:
            fresh = AccountKey.generate()
            sealed = await self._store.acme.save_account_key(
                url, self._key.seal(fresh.to_pem(), associated))
        self._account = AccountKey.from_pem(self._key.open(sealed, associated))
        return self._account

    # -- challenges reach the routers -------------------------------------------------------

    async def routers_have(self, revision: int) -> bool:
        """Wait until every router following any control node was sent `revision`; False
        after `publish_wait` (or None following at all: True, nothing to wait for)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.publish_wait
        while True:
            others = await self._store.nodes.others(self._node_id) \
                if self._store.db.shared else []
            delivered = fleet_delivered(self._followers.delivered(), others, now=self._clock())
            if delivered is None or delivered >= revision:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("acme: routers were not all sent revision %d within %.0fs; asking "
                            "the CA to validate anyway", revision, self.settings.publish_wait)
                return False
            self._progress.clear()
            try:  # other nodes publish their progress in the store: look again each second
                async with asyncio.timeout(min(remaining, 1.0)):
                    await self._progress.wait()
            except TimeoutError:
                pass


class _Board:
    """issuance.py's ChallengeBoard for one domain: the store's route entry."""

    def __init__(self, manager: CertificateManager, domain: AcmeDomain) -> None:
        self._manager = manager
        self._domain = domain

    async def publish(self, domain: str, token: str, key_authorization: str) -> None:
        revision = await self._manager._store.acme.publish(self._domain, token,
                                                           key_authorization)
        if revision is None:
            raise errors.NotFound(f"{domain} is no longer managed")
        await self._manager.routers_have(revision)

    async def withdraw(self, domain: str, token: str) -> None:
        await self._manager._store.acme.withdraw(self._domain, token)


def _reason(exc: Exception) -> str:
    """What `certs` shows after `failed: `: the CA's problem, else our own account of it."""
    if isinstance(exc, AcmeError):
        return str(exc.problem)
    return str(exc)
