"""poll_until: checks with growing pauses until yes or the deadline, on an injected clock."""

from __future__ import annotations

import pytest

from dynomesh.backoff import BackoffPolicy
from dynomesh.poll import poll_until

pytestmark = pytest.mark.unit


class FakeTime:
    """A clock that only the fake sleep moves; records each pause."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(round(seconds, 6))
        self.now += seconds


async def test_a_condition_already_true_is_checked_once_with_no_pause():
    time = FakeTime()
    calls = []
    assert await poll_until(lambda: calls.append(1) or True, 5.0,
                            clock=time.clock, sleep=time.sleep)
    assert calls == [1] and time.pauses == []


async def test_pauses_double_from_ten_ms_up_to_a_quarter_second():
    time = FakeTime()
    answers = iter([False] * 7 + [True])
    assert await poll_until(lambda: next(answers), 10.0, clock=time.clock, sleep=time.sleep)
    assert time.pauses == [0.01, 0.02, 0.04, 0.08, 0.16, 0.25, 0.25]


async def test_the_last_pause_ends_at_the_deadline_where_it_is_asked_once_more():
    time = FakeTime()
    asked_at = []

    def never() -> bool:
        asked_at.append(round(time.now, 6))
        return False

    assert not await poll_until(never, 0.1, clock=time.clock, sleep=time.sleep)
    assert time.pauses == [0.01, 0.02, 0.04, 0.03]
    assert asked_at[-1] == 0.1


async def test_an_async_check_is_awaited_and_another_policy_can_be_given():
    time = FakeTime()
    answers = iter([False, False, True])

    async def check() -> bool:
        return next(answers)

    assert await poll_until(check, 10.0, policy=BackoffPolicy(1.0, 1.5),
                            clock=time.clock, sleep=time.sleep)
    assert time.pauses == [1.0, 1.5]


async def test_an_exception_from_the_check_ends_the_wait():
    def broken() -> bool:
        raise OSError("gone wrong")

    with pytest.raises(OSError, match="gone wrong"):
        await poll_until(broken, 1.0)
