"""When a domain needs a certificate: a pure decision with the clock and the random source
injected, so tests assert exact times.

- never attempted (`pending`): now;
- `issued`: `renew_before` (30 days) before its expiry: Let's Encrypt's advice for its 90-day
  certificates, and when Heroku's ACM renews;
- `failed`: at `retry_at`, set after each failure from a back-off (dynomesh/backoff.py) that
  starts at 5 minutes and doubles to a day: Let's Encrypt allows 5 failed validations per
  hostname per hour, and a failure is usually DNS pointing elsewhere, which takes a person.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from controlplane.store.models import AcmeDomain
from dynomesh.backoff import BackoffPolicy

DAY = 86400.0


@dataclass(frozen=True)
class RenewalPolicy:
    renew_before: float = 30 * DAY
    retry: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(
        base=300.0, cap=DAY, factor=2.0, jitter=0.1))

    def __post_init__(self) -> None:
        if not self.renew_before > 0:
            raise ValueError(f"renew-before must be above 0 s, got {self.renew_before}")

    def due_at(self, domain: AcmeDomain) -> float:
        """Unix time of the next attempt for `domain` (0: at once)."""
        if domain.status == "failed" and domain.retry_at is not None:
            return domain.retry_at
        if domain.status == "issued" and domain.not_after is not None:
            return domain.not_after - self.renew_before
        return 0.0

    def after_failure(self, failures_before: int, now: float,
                      rng: random.Random | None = None) -> tuple[int, float]:
        """(failures in a row now, when to try again)."""
        backoff = self.retry.start(rng)
        backoff.failures = failures_before
        return failures_before + 1, now + backoff.next_delay()
