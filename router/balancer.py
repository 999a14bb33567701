"""Dyno choice: power of two choices on in-flight requests.

Heroku's router picks a dyno at random, so a request can queue behind a slow one while others sit
idle. Sampling two distinct dynos at random and taking the one with fewer requests in flight
(Mitzenmacher's "power of two choices") keeps most of random's spread and cost while steering
away from busy dynos. Ties keep the first sample, which is itself random.

A pure policy: it reads `in_flight` from the candidates and takes its randomness from an
injected `random.Random`, so tests can assert exact choices.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Loaded(Protocol):
    in_flight: int


T = TypeVar("T", bound=Loaded)


class P2CBalancer:
    __slots__ = ("_random",)

    def __init__(self, rng: random.Random) -> None:
        self._random = rng.random

    def choose(self, candidates: Sequence[T]) -> T | None:
        """The less loaded of two distinct random candidates; None when there are none."""
        n = len(candidates)
        if n <= 2:
            if n == 2:
                a, b = candidates
                if a.in_flight == b.in_flight:
                    return a if self._random() < 0.5 else b
                return a if a.in_flight < b.in_flight else b
            return candidates[0] if n else None
        rand = self._random
        i = int(rand() * n)
        j = int(rand() * (n - 1))
        if j >= i:
            j += 1  # a second, distinct index, uniform over the other n-1
        a, b = candidates[i], candidates[j]
        return a if a.in_flight <= b.in_flight else b
