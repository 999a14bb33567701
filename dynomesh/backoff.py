"""Back-off: how long to wait before trying again, the one policy every component uses.

A `BackoffPolicy` holds the numbers (frozen, validated; configuration carries one). Its
`start()` gives a `Backoff` that hands out delays `base × factor^n`, at most `cap`, each
shortened at random by up to `jitter` of itself, so that many clients that failed together (a
lost control plane, a lost database, a bad release) do not come back in lockstep; `reset()`
starts over after a success. With `immediate_first`, the first delay after a reset is 0 (a
one-off failure costs nothing) and the exponential part starts at the second.

`RestartBackoff` is that policy for restarting a process that ended unasked: the first restart
is immediate, later ones back off, and a run of `healthy_after` seconds forgives the past.

Both are arithmetic with the clock and the random source injected, so tests assert exact delays.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class BackoffPolicy:
    """A back-off's numbers, frozen and validated on construction (configuration holds these);
    `start()` makes the `Backoff` that counts one retry loop's failures."""

    base: float  # the first delay (the second, with immediate_first)
    cap: float  # the longest delay
    factor: float = 2.0  # each delay this many times the one before
    jitter: float = 0.0  # up to this fraction of each delay is shaved off at random
    immediate_first: bool = False  # the first delay after a reset is 0

    def __post_init__(self) -> None:
        if not self.base > 0:
            raise ValueError(f"back-off base must be above 0 s, got {self.base}")
        if self.cap < self.base:
            raise ValueError(f"back-off cap ({self.cap} s) must not be below its base "
                             f"({self.base} s)")
        if self.factor < 1:
            raise ValueError(f"back-off factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"back-off jitter must be in [0, 1), got {self.jitter}")

    def start(self, rng: random.Random | None = None) -> Backoff:
        return Backoff(self, rng)


class Backoff:
    """Delays between attempts under one `BackoffPolicy`. Not thread-safe; one per retry loop."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng if rng is not None else random.Random()
        # Past this many steps the cap holds: keeps factor ** n from overflowing.
        self._steps_to_cap = (0 if policy.factor == 1
                              else math.ceil(math.log(policy.cap / policy.base, policy.factor)))
        self.failures = 0  # delays handed out since the last reset

    def next_delay(self) -> float:
        """The wait before the next attempt (one more failure counted)."""
        policy = self.policy
        n = self.failures
        self.failures += 1
        if policy.immediate_first:
            if n == 0:
                return 0.0
            n -= 1
        nominal = min(policy.cap, policy.base * policy.factor ** min(n, self._steps_to_cap))
        if not policy.jitter:
            return nominal
        return nominal * (1.0 - policy.jitter * self._rng.random())

    def reset(self) -> None:
        """The last attempt worked: the next failure starts over."""
        self.failures = 0


class RestartBackoff:
    """When to start again a process that ended unasked (a dyno, a part of `dynomesh up`, a
    router worker): `started()` when it is launched, `exited()` when it ends, which returns the
    delay. A run of at least `healthy_after` seconds makes the next exit count as the first."""

    def __init__(self, backoff: Backoff, *, healthy_after: float,
                 clock: Callable[[], float]) -> None:
        if healthy_after <= 0:
            raise ValueError(f"healthy-after must be > 0 seconds, got {healthy_after}")
        if not backoff.policy.immediate_first:
            raise ValueError("a restart back-off restarts at once the first time")
        self._backoff = backoff
        self._healthy_after = healthy_after
        self._clock = clock
        self._started_at: float | None = None
        self.after_healthy_run = False  # whether the last exit came after a healthy run

    @property
    def failures(self) -> int:
        """Exits in a row so far, the last one included (0 after a reset)."""
        return self._backoff.failures

    def started(self, at: float | None = None) -> None:
        """The process was launched, now or at `at` (this clock's time)."""
        self._started_at = self._clock() if at is None else at

    def resume(self, failures: int) -> None:
        """Go on from `failures` exits in a row counted by another supervisor (a process it
        handed over): the next exit backs off as it would have there."""
        self._backoff.failures = max(0, failures)

    def exited(self) -> float:
        """The process just ended unasked: seconds to wait before starting it again. An exit
        with no `started()` before it (a launch that failed) counts as a failure too."""
        ran = None if self._started_at is None else self._clock() - self._started_at
        self._started_at = None
        self.after_healthy_run = ran is not None and ran >= self._healthy_after
        if self.after_healthy_run:
            self._backoff.reset()
        return self._backoff.next_delay()

    def reset(self) -> None:
        """Forget past exits (a new release, an operator's restart)."""
        self._backoff.reset()
        self._started_at = None
