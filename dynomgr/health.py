"""The running health check's decision: when a web dyno leaves the routers' tables, and when it
comes back.

Pure: `HealthPolicy.observe(check)` takes one check's result and says whether the dyno's
health changed. N failed checks in a row make a healthy dyno unhealthy; one passing check makes
an unhealthy dyno healthy again (like a load balancer's unhealthy threshold with a healthy
threshold of one: a dyno that answers is better served than waited for). The reason it gives is
what `dynomesh ps` shows: `GET /health → 503 ×3`, or `→ no HTTP answer in 5 s`.

The poller (dynomgr/healthpoll.py) does the I/O and the waiting.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.Enum):
    SAME = "same"  # no change to report
    UNHEALTHY = "unhealthy"  # the Nth failure in a row: out of the routers' tables
    HEALTHY = "healthy"  # passed again after being unhealthy: back in


@dataclass(frozen=True)
class Check:
    """One check: the status answered (None: no answer within the timeout)."""

    status: int | None

    @property
    def passed(self) -> bool:
        # 2xx and 3xx pass, as in the boot check (docs/assignments-format.md).
        return self.status is not None and 200 <= self.status < 400


class HealthPolicy:
    """Counts failed checks in a row for one dyno's life (a new life starts a new policy)."""

    def __init__(self, path: str, failures: int, timeout: float, *,
                 unhealthy: bool = False) -> None:
        """`unhealthy`: as reported before (a dyno adopted from the previous agent), so that
        its first passing check brings it back."""
        if failures < 1:
            raise ValueError(f"health check failures must be at least 1, got {failures}")
        self.path = path
        self.failures = failures
        self.timeout = timeout
        self.in_a_row = 0
        self.last: Check | None = None
        self.unhealthy = unhealthy

    def observe(self, check: Check) -> Verdict:
        self.last = check
        if check.passed:
            self.in_a_row = 0
            if self.unhealthy:
                self.unhealthy = False
                return Verdict.HEALTHY
            return Verdict.SAME
        self.in_a_row += 1
        if not self.unhealthy and self.in_a_row >= self.failures:
            self.unhealthy = True
            return Verdict.UNHEALTHY
        return Verdict.SAME

    def reason(self) -> str:
        """Why the dyno is unhealthy, from the last check: `GET /health → 503 ×3`."""
        last = self.last
        answer = (f"no HTTP answer in {self.timeout:g} s" if last is None or last.status is None
                  else str(last.status))
        return f"GET {self.path} → {answer} ×{self.in_a_row}"
