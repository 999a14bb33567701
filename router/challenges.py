"""ACME HTTP-01 challenge answers (RFC 8555 §8.3): the router answers
`GET /.well-known/acme-challenge/<token>` for an app's hosts with the key authorization the
control plane put in the app's route entry (`acme_challenges`, docs/routes-format.md), before
the app's dynos are asked: it works while the app has no dynos, is booting or in maintenance.

Each answer is a complete response made once, when the entry is bound (`answers_for`); an app
without challenges has None, so the request path pays one C-level test of `None` for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from router.routes import AppRoute

PATH = b"/.well-known/acme-challenge/"


@dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    """A 200 the router makes itself; the fields `router_answer` and the log line read, as a
    RouterError has them (code None: logged as a plain answer, `at=info`)."""

    key_authorization: str
    code: None = None
    status: int = 200
    desc: str = "ACME challenge answered"
    level: str = "info"
    response: bytes = field(init=False, repr=False)
    head_response: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # RFC 8555 §8.3: the body is the key authorization; `application/octet-stream` is
        # what Let's Encrypt's own responders send, and what any CA accepts.
        body = self.key_authorization.encode("ascii")
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n"
                b"Via: 1.1 dynomesh\r\n\r\n" % len(body))
        object.__setattr__(self, "response", head + body)
        object.__setattr__(self, "head_response", head)

    @property
    def body_length(self) -> int:
        return len(self.response) - len(self.head_response)


def answers_for(route: AppRoute) -> dict[bytes, ChallengeAnswer] | None:
    """Request target -> answer for the app's pending challenges; None when it has none."""
    if not route.acme_challenges:
        return None
    return {PATH + token.encode("ascii"): ChallengeAnswer(answer)
            for token, answer in route.acme_challenges}
