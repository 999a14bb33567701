"""BackoffPolicy, Backoff and RestartBackoff: exact delays with an injected clock and random source."""

from __future__ import annotations

import random

import pytest

from dynomesh.backoff import Backoff, BackoffPolicy, RestartBackoff

pytestmark = pytest.mark.unit


class FixedRandom(random.Random):
    """random() returns the given values in turn (then the last one for ever)."""

    def __init__(self, *values: float) -> None:
        super().__init__()
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def delays(backoff: Backoff, count: int) -> list[float]:
    return [round(backoff.next_delay(), 6) for _ in range(count)]


def test_delays_double_from_the_base_to_the_cap_and_reset_starts_over():
    backoff = BackoffPolicy(0.1, 5.0).start()
    assert delays(backoff, 8) == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff.failures == 8
    backoff.reset()
    assert backoff.failures == 0
    assert delays(backoff, 2) == [0.1, 0.2]


def test_the_factor_sets_the_growth():
    assert delays(BackoffPolicy(1, 100, factor=3).start(), 6) == [1, 3, 9, 27, 81, 100]
    assert delays(BackoffPolicy(2, 100, factor=1).start(), 3) == [2, 2, 2]


def test_jitter_shaves_up_to_its_fraction_off_each_delay():
    backoff = BackoffPolicy(4, 100, jitter=0.25).start(FixedRandom(0.5, 1.0, 0.0))
    assert delays(backoff, 3) == [4 * (1 - 0.125), 8 * (1 - 0.25), 16]


def test_equal_jitter_keeps_every_delay_between_half_and_all_of_its_nominal():
    spread = BackoffPolicy(1.0, 1.0, jitter=0.5).start(random.Random(1))
    seen = [spread.next_delay() for _ in range(200)]
    assert 0.5 <= min(seen) < 0.6 and 0.9 < max(seen) <= 1.0


def test_immediate_first_makes_the_first_delay_zero_then_backs_off_from_the_base():
    backoff = BackoffPolicy(1, 10, jitter=0.5, immediate_first=True).start(FixedRandom(0.0))
    assert delays(backoff, 6) == [0, 1, 2, 4, 8, 10]
    backoff.reset()
    assert delays(backoff, 2) == [0, 1]


def test_a_long_run_of_failures_stays_at_the_cap_without_overflowing():
    backoff = BackoffPolicy(0.001, 60, factor=10).start()
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 60


def test_a_policy_is_frozen_and_each_start_counts_on_its_own():
    policy = BackoffPolicy(1, 8)
    first, second = policy.start(), policy.start()
    assert delays(first, 3) == [1, 2, 4]
    assert delays(second, 1) == [1]
    with pytest.raises(AttributeError):
        policy.base = 2


@pytest.mark.parametrize("kwargs, message", [
    ({"base": 0, "cap": 1}, "base"),
    ({"base": 2, "cap": 1}, "cap"),
    ({"base": 1, "cap": 2, "factor": 0.5}, "factor"),
    ({"base": 1, "cap": 2, "jitter": 1.0}, "jitter"),
])
def test_bad_settings_are_refused_with_a_message_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BackoffPolicy(**kwargs)


def restarts(cap: float = 8.0, healthy_after: float = 30.0) -> tuple[RestartBackoff, FakeClock]:
    clock = FakeClock()
    backoff = BackoffPolicy(1.0, cap, immediate_first=True).start()
    return RestartBackoff(backoff, healthy_after=healthy_after, clock=clock), clock


def test_restarts_are_immediate_then_double_to_the_cap_and_a_long_run_forgives():
    tracker, clock = restarts()
    seen = []
    for _ in range(6):
        tracker.started()
        clock.now += 1
        seen.append(tracker.exited())
    assert seen == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert tracker.failures == 6 and not tracker.after_healthy_run
    tracker.started()
    clock.now += 30
    assert tracker.exited() == 0.0
    assert tracker.failures == 1 and tracker.after_healthy_run


def test_an_exit_without_a_start_counts_and_reset_starts_over():
    tracker, _ = restarts()
    assert [tracker.exited() for _ in range(3)] == [0.0, 1.0, 2.0]
    tracker.reset()
    assert tracker.exited() == 0.0


def test_a_restart_back_off_must_restart_at_once_first():
    with pytest.raises(ValueError, match="at once"):
        RestartBackoff(BackoffPolicy(1, 2).start(), healthy_after=1, clock=FakeClock())
    with pytest.raises(ValueError, match="healthy"):
        RestartBackoff(BackoffPolicy(1, 2, immediate_first=True).start(), healthy_after=0,
                       clock=FakeClock())
