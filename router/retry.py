"""When a failed attempt at a dyno may be tried again (sans-IO).

A retry must never make a request happen twice. So:

  * a connect that failed (refused, reset, or not accepted in time) sent nothing: another dyno
    is tried, up to the attempt limit (Heroku: 10), each dyno at most once;
  * once request bytes were written, nothing is retried, with one exception: a pooled
    connection that the dyno had closed while it sat idle fails on first use, before any
    response byte. For a request that is idempotent (RFC 9110 §9.2.2) and has no body (so
    nothing the client sent is lost), it is sent once more on a fresh connection, as browsers
    and nginx do for their own keep-alive connections.

`RetryPolicy` answers with a `Retry`; the exchange acts on it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# RFC 9110 §9.2.2: only these may be sent again after a connection died under them.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


class Retry(enum.Enum):
    ANOTHER_DYNO = "another dyno"  # nothing was sent: try a dyno not tried yet
    FRESH_CONNECTION = "fresh connection"  # the same request again on a new connection
    GIVE_UP = "give up"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 10

    def after_connect_failure(self, attempts: int, untried: int) -> Retry:
        """A connect failed; `attempts` connects were made so far for this request, and
        `untried` dynos of the app have not been tried yet."""
        if attempts < self.max_attempts and untried > 0:
            return Retry.ANOTHER_DYNO
        return Retry.GIVE_UP

    def after_connection_closed(self, *, method: bytes, has_body: bool, reused: bool,
                                response_started: bool, retried: bool) -> Retry:
        """The dyno connection closed after the request was written to it."""
        if (reused and not response_started and not retried and not has_body
                and method in IDEMPOTENT):
            return Retry.FRESH_CONNECTION
        return Retry.GIVE_UP
