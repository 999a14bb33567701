"""`RestartBackoff`: when `dynomesh up` starts a child again after it died. Pure, clock injected.

The first restart is immediate (a one-off crash costs nothing), then 1, 2, 4, … seconds up to
the cap, so a child that cannot start (a taken port, a broken database) does not spin. A run of
`healthy_after` seconds forgives the past.
"""

from __future__ import annotations

from typing import Callable


class RestartBackoff:
    def __init__(self, clock: Callable[[], float], *, base: float = 1.0, cap: float = 30.0,
                 healthy_after: float = 30.0) -> None:
        if not 0 < base <= cap or healthy_after <= 0:
            raise ValueError("restart back-off needs 0 < base <= cap and healthy_after > 0")
        self._clock = clock
        self._base = base
        self._cap = cap
        self._healthy_after = healthy_after
        self._started_at: float | None = None
        self.failures = 0

    def started(self) -> None:
        self._started_at = self._clock()

    def exited(self) -> float:
        """The child just died: seconds to wait before starting it again."""
        ran = self._clock() - self._started_at if self._started_at is not None else 0.0
        if ran >= self._healthy_after:
            self.failures = 0
        self.failures += 1
        if self.failures == 1:
            return 0.0
        return min(self._cap, self._base * 2 ** (self.failures - 2))
