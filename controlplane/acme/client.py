"""The HTTP side of ACME (RFC 8555 §7): directory, nonces, account, orders, authorizations,
challenges, finalize, polling and the certificate download, on aiohttp.

Every request but the directory and newNonce is a POST of a JWS (jws.py); a GET of a resource
is a POST-as-GET (§6.3). The client keeps the `Replay-Nonce` of each response for the next
request (§7.2) and, when the CA refuses a nonce (`badNonce`, §6.5), signs again with the fresh
nonce that refusal carries, a bounded number of times. Polling (§7.5.1, §7.4) waits what the
CA's `Retry-After` asks, else a bounded exponential back-off, and gives up after a deadline.

The decisions (states, problems, key authorizations) are protocol.py's; this module only moves
them over HTTP. Traffic goes to the directory URL given (a flag), trusting the CA bundle given.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from controlplane.acme.jws import AccountKey
from controlplane.acme.protocol import (Authorization, AuthzStatus, Order, OrderStatus,
                                        Problem, ProtocolError, csr_field, retry_after)
from dynomesh.backoff import BackoffPolicy

log = logging.getLogger(__name__)

JOSE = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"
# badNonce is retryable (§6.5); Pebble refuses 5% of good nonces on purpose. Three refusals in
# a row is a CA that is not answering with usable nonces.
NONCE_RETRIES = 3


class AcmeError(Exception):
    """The CA refused a request or failed an order; `problem` is its reason, as shown in
    `certs` (`failed: <reason>`)."""

    def __init__(self, problem: Problem, what: str) -> None:
        super().__init__(f"{what}: {problem}")
        self.problem = problem
        self.what = what


class AcmeUnavailable(Exception):
    """The CA could not be reached or answered nonsense: try again later."""


@dataclass(frozen=True)
class PollSettings:
    """How an order or authorization is polled while the CA works (RFC 8555 §7.5.1)."""

    # Without a Retry-After: 0.25 s, doubling, at most 8 s between polls.
    backoff: BackoffPolicy = BackoffPolicy(base=0.25, cap=8.0)
    # A Retry-After beyond this is shortened to it (a CA asking for an hour is not waited on
    # within one attempt; the next attempt comes with the loop's back-off).
    longest_wait: float = 30.0
    # The whole wait for one object; Let's Encrypt validates within seconds.
    deadline: float = 120.0
    # One HTTP exchange with the CA.
    request_timeout: float = 30.0


def ca_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The TLS context for the CA: the system's trust store, or only the bundle given
    (`--acme-ca-file`: Pebble's test CA in tests, a private CA in a closed network)."""
    context = ssl.create_default_context(cafile=ca_file)
    return context


class AcmeClient:
    """One ACME account's conversation with one CA. Use as `async with`."""

    def __init__(self, directory_url: str, key: AccountKey, *, ssl_context: ssl.SSLContext,
                 settings: PollSettings = PollSettings(),
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.directory_url = directory_url
        self.key = key
        self.kid: str | None = None  # the account URL, once newAccount answered
        self._ssl = ssl_context
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._directory: dict[str, Any] | None = None
        self._nonce: str | None = None

    async def __aenter__(self) -> AcmeClient:
        timeout = aiohttp.ClientTimeout(total=self._settings.request_timeout)
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(ssl=self._ssl),
            headers={"User-Agent": "dynomesh-acme"})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- directory and nonces (§7.1.1, §7.2) -------------------------------------------------

    async def directory(self) -> dict[str, Any]:
        if self._directory is None:
            body = await self._get_json(self.directory_url, "the ACME directory")
            for name in ("newNonce", "newAccount", "newOrder"):
                if not isinstance(body.get(name), str):
                    raise AcmeUnavailable(f"{self.directory_url} is not an ACME directory "
                                          f"(no {name}): check --acme-directory")
            self._directory = body
        return self._directory

    async def _fresh_nonce(self) -> str:
        url = (await self.directory())["newNonce"]
        try:
            async with self._http().head(url) as response:
                nonce = response.headers.get("Replay-Nonce")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise AcmeUnavailable(f"the CA at {url} did not answer: {exc!r}") from exc
        if not nonce:
            raise AcmeUnavailable(f"the CA's newNonce ({url}) gave no Replay-Nonce")
        return nonce

    # -- signed requests (§6.2, §6.3) --------------------------------------------------------

    async def post(self, url: str, payload: Any, what: str, *,
                   accept: str = "application/json") -> tuple[int, dict[str, str], Any]:
        """POST a JWS to `url` (payload None: POST-as-GET); returns (status, headers, body:
        parsed JSON, or text for `accept` other than JSON). A CA problem raises AcmeError."""
        for attempt in range(NONCE_RETRIES + 1):
            nonce = self._nonce or await self._fresh_nonce()
            self._nonce = None
            body = self.key.sign(payload, url=url, nonce=nonce, kid=self.kid)
            status, headers, data = await self._exchange(url, body, accept)
            self._nonce = headers.get("Replay-Nonce") or None
            if status < 400:
                return status, headers, data
            problem = Problem.parse(data if isinstance(data, dict) else None, status)
            if problem.short_type == "badNonce" and attempt < NONCE_RETRIES:
                log.debug("acme: %s: nonce refused, signing again", what)
                continue
            raise AcmeError(problem, what)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _exchange(self, url: str, body: dict, accept: str
                        ) -> tuple[int, dict[str, str], Any]:
        try:
            async with self._http().post(url, json=body, headers={
                    "Content-Type": JOSE, "Accept": accept}) as response:
                headers = {k: v for k, v in response.headers.items()}
                if response.content_type in ("application/json", "application/problem+json"):
                    data: Any = await response.json(content_type=None)
                else:
                    data = await response.text()
                return response.status, headers, data
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise AcmeUnavailable(f"the CA at {url} did not answer usefully: {exc!r}") from exc

    # -- account and orders (§7.3, §7.4) ----------------------------------------------------

    async def register(self) -> str:
        """Create the account, or find it if this key has one (§7.3.1); returns its URL."""
        url = (await self.directory())["newAccount"]
        status, headers, _ = await self.post(url, {"termsOfServiceAgreed": True},
                                             "creating the ACME account")
        kid = headers.get("Location")
        if not kid:
            raise ProtocolError("the CA's newAccount answer has no Location (RFC 8555 §7.3)")
        self.kid = kid
        return kid

    async def new_order(self, domains: list[str]) -> Order:
        url = (await self.directory())["newOrder"]
        identifiers = [{"type": "dns", "value": domain} for domain in domains]
        _, headers, body = await self.post(url, {"identifiers": identifiers},
                                           f"ordering a certificate for {', '.join(domains)}")
        location = headers.get("Location")
        if not location:
            raise ProtocolError("the CA's newOrder answer has no Location (RFC 8555 §7.4)")
        return Order.parse(location, body)

    async def order(self, url: str) -> tuple[Order, dict[str, str]]:
        _, headers, body = await self.post(url, None, "reading the order")
        return Order.parse(url, body), headers

    async def authorization(self, url: str) -> tuple[Authorization, dict[str, str]]:
        _, headers, body = await self.post(url, None, "reading the authorization")
        return Authorization.parse(url, body), headers

    async def answer_challenge(self, url: str) -> None:
        """Tell the CA the response is in place (§7.5.1: an empty JSON object)."""
        await self.post(url, {}, "answering the challenge")

    async def finalize(self, order: Order, csr_der: bytes) -> Order:
        _, _, body = await self.post(order.finalize, {"csr": csr_field(csr_der)},
                                     "finalizing the order")
        return Order.parse(order.url, body)

    async def certificate(self, url: str) -> str:
        """The PEM chain, leaf first (§7.4.2)."""
        _, _, text = await self.post(url, None, "downloading the certificate",
                                     accept=PEM_CHAIN)
        if not isinstance(text, str) or "-----BEGIN CERTIFICATE-----" not in text:
            raise ProtocolError("the CA's certificate download is not a PEM chain")
        return text

    # -- polling (§7.5.1) -------------------------------------------------------------------

    async def wait_authorization(self, url: str) -> Authorization:
        """Poll until the authorization leaves `pending`."""
        return await self._poll(self.authorization, url,
                                lambda a: a.status is not AuthzStatus.PENDING, "authorization")

    async def wait_order(self, url: str, *, until: frozenset[OrderStatus]) -> Order:
        return await self._poll(self.order, url, lambda o: o.status in until, "order")

    async def _poll(self, read, url: str, done, what: str):
        settings = self._settings
        backoff = settings.backoff.start()
        give_up_at = self._clock() + settings.deadline
        while True:
            thing, headers = await read(url)
            if done(thing):
                return thing
            now = self._clock()
            delay = retry_after(headers.get("Retry-After"), now, default=-1.0,
                                longest=settings.longest_wait)
            if delay < 0:  # the CA did not say: the back-off's next step
                delay = backoff.next_delay()
            if now + delay > give_up_at:
                raise AcmeUnavailable(f"the CA kept the {what} at {url} {thing.status.value} "
                                      f"for {settings.deadline:.0f} s")
            await self._sleep(delay)

    # -- plumbing ---------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AcmeClient used outside `async with`")
        return self._session

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with self._http().get(url) as response:
                if response.status != 200:
                    raise AcmeUnavailable(f"{what} at {url} answered {response.status}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise AcmeUnavailable(f"{what} at {url} did not answer usefully: {exc!r}") from exc
        if not isinstance(body, dict):
            raise AcmeUnavailable(f"{what} at {url} is not a JSON object")
        return body
