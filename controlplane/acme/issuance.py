"""One certificate for one domain: a new order, its HTTP-01 challenges answered through the
routers, the CSR, and the chain (RFC 8555 §7.4, §8.3).

The challenge responses reach the routers through a `ChallengeBoard` (in the control plane: the
store, whose change reaches routers in the route feed); `publish` returns once the routers have
been sent it, so the CA is told to validate only then. Every token published is withdrawn at the
end, whatever happened.
"""

from __future__ import annotations

import logging
from typing import Protocol

from controlplane.acme.client import AcmeClient, AcmeError
from controlplane.acme.protocol import (AuthzStatus, IssuedCertificate, OrderStatus, Problem,
                                        Step, check_issued, key_authorization, make_csr,
                                        next_step)

log = logging.getLogger(__name__)

_SETTLED = frozenset({OrderStatus.READY, OrderStatus.VALID, OrderStatus.INVALID})
_ISSUED = frozenset({OrderStatus.VALID, OrderStatus.INVALID})


class ChallengeBoard(Protocol):
    """Where HTTP-01 responses are put for the routers to answer."""

    async def publish(self, domain: str, token: str, key_authorization: str) -> None:
        """Make routers answer `GET /.well-known/acme-challenge/<token>` for `domain`; return
        once they have been sent it."""

    async def withdraw(self, domain: str, token: str) -> None: ...


async def issue(client: AcmeClient, domain: str, board: ChallengeBoard) -> IssuedCertificate:
    """Order, authorize, finalize and download a certificate for `domain`. Raises AcmeError
    with the CA's problem when the CA refuses, AcmeUnavailable when it cannot be reached."""
    order = await client.new_order([domain])
    published: list[str] = []
    try:
        if next_step(order, finalized=False) is Step.AUTHORIZE:
            for url in order.authorizations:
                await _authorize(client, domain, url, board, published)
            order = await client.wait_order(order.url, until=_SETTLED)
        csr, key_pem = make_csr(domain)
        step = next_step(order, finalized=False)
        if step is Step.FINALIZE:
            order = await client.finalize(order, csr)
            step = next_step(order, finalized=True)
        if step is Step.WAIT:
            order = await client.wait_order(order.url, until=_ISSUED)
            step = next_step(order, finalized=True)
        if step is not Step.DOWNLOAD:
            raise AcmeError(order.error or Problem("about:blank", f"the order is "
                                                   f"{order.status.value}"),
                            f"ordering a certificate for {domain}")
        chain = await client.certificate(order.certificate)  # type: ignore[arg-type]
    finally:
        for token in published:
            await board.withdraw(domain, token)
    return check_issued(domain, chain, key_pem)


async def _authorize(client: AcmeClient, domain: str, url: str, board: ChallengeBoard,
                     published: list[str]) -> None:
    authz, _ = await client.authorization(url)
    if authz.status is AuthzStatus.VALID:
        return  # the CA reused an earlier proof (RFC 8555 §7.1.3 allows it)
    if authz.status is not AuthzStatus.PENDING:
        raise AcmeError(Problem("about:blank", f"the authorization for {authz.domain} is "
                                f"{authz.status.value}"), f"authorizing {domain}")
    challenge = authz.http01
    if challenge is None:
        raise AcmeError(Problem("about:blank", "the CA offers no http-01 challenge for "
                                f"{authz.domain}; dynomesh answers only http-01"),
                        f"authorizing {domain}")
    answer = key_authorization(challenge.token, client.key.thumbprint)
    await board.publish(domain, challenge.token, answer)
    published.append(challenge.token)
    await client.answer_challenge(challenge.url)
    authz = await client.wait_authorization(url)
    if authz.status is not AuthzStatus.VALID:
        problem = (authz.http01.error if authz.http01 is not None else None) or Problem(
            "about:blank", f"the authorization is {authz.status.value}")
        raise AcmeError(problem, f"validating {domain}")
    log.info("acme: %s: control of the domain proven (http-01)", domain)
