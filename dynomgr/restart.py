"""When to restart a crashed dyno: a pure decision object with an injected clock and RNG.

Heroku restarts a crashed dyno at once the first time, then makes it wait ever longer (cool-offs
of 20 minutes and more, a common complaint). dynomesh keeps the first restart immediate and then
backs off exponentially from `base` up to a short `cap`, never giving up:

    crash #1  ->  0 s
    crash #2  ->  base              (1 s by default)
    crash #n  ->  min(cap, base * factor ** (n - 2))   (cap 60 s by default)

Each delay after the first is shortened by a random fraction of up to `jitter` so that dynos that
crashed together (a bad release, a lost database) do not restart in lockstep. A dyno that ran for
`healthy_after` seconds before crashing starts over at crash #1, and a new release (a new dyno
object) starts over too. The `Dyno` calls `started()` when it launches a process and `crashed()`
when that process ends unasked; everything here is arithmetic, so tests assert exact delays.
The delays come from the shared `dynomesh.backoff.RestartBackoff`; this object adds the
dyno's configuration and the reason each delay gets in the log.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable

from dynomesh.backoff import BackoffPolicy, RestartBackoff


@dataclass(frozen=True)
class RestartConfig:
    # Second restart waits this long; each later one `factor` times longer.
    base: float = 1.0
    factor: float = 2.0
    # Longest wait between restarts. Short on purpose: a crash loop costs one process start a
    # minute, and a fixed app comes back within a minute instead of Heroku's 20+.
    cap: float = 60.0
    # Up to this fraction of a delay is shaved off at random (0 = exact delays).
    jitter: float = 0.25
    # A run at least this long counts as healthy: the next crash is treated as the first.
    healthy_after: float = 300.0

    def __post_init__(self) -> None:
        self.backoff  # noqa: B018 - builds the policy, which refuses bad numbers by name
        if self.healthy_after <= 0:
            raise ValueError(f"healthy-after must be > 0 seconds, got {self.healthy_after}")

    @property
    def backoff(self) -> BackoffPolicy:
        return BackoffPolicy(self.base, self.cap, factor=self.factor, jitter=self.jitter,
                             immediate_first=True)


@dataclass(frozen=True)
class RestartDecision:
    delay: float  # seconds to wait in `crashed` before starting again
    attempt: int  # crashes in a row, this one included
    reason: str  # why this delay, for the log line


class RestartPolicy:
    """Back-off state of one dyno. Not thread-safe; one per dyno."""

    def __init__(
        self,
        config: RestartConfig,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._restarts = RestartBackoff(config.backoff.start(rng),
                                        healthy_after=config.healthy_after, clock=clock)

    @property
    def crashes(self) -> int:
        """Crashes in a row so far (0 after a healthy run or a reset)."""
        return self._restarts.failures

    def started(self, at: float | None = None) -> None:
        """A process of this dyno was just launched (or at `at`, this clock's time)."""
        self._restarts.started(at)

    def resume(self, crashes: int) -> None:
        """Go on from the crashes in a row a previous agent counted (a dyno it handed over)."""
        self._restarts.resume(crashes)

    def reset(self) -> None:
        """Forget past crashes (a new release, an operator's restart)."""
        self._restarts.reset()

    def crashed(self) -> RestartDecision:
        """The process ended without being asked to: how long to wait before the next start."""
        delay = self._restarts.exited()
        crashes = self._restarts.failures
        if crashes == 1:
            healthy = " after a healthy run" if self._restarts.after_healthy_run else ""
            return RestartDecision(delay, 1, f"first crash{healthy}: restarting at once")
        return RestartDecision(delay, crashes, f"crash {crashes} in a row: back-off")
