"""RestartPolicy: exact delays with an injected clock and RNG."""

from __future__ import annotations

import pytest

from dynomgr.restart import RestartConfig, RestartPolicy

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FixedRandom:
    """random() returns the given values in turn (then the last one forever)."""

    def __init__(self, *values: float) -> None:
        self._values = list(values)

    def random(self) -> float:
        return self._values.pop(0) if len(self._values) > 1 else self._values[0]


def crash_loop(policy: RestartPolicy, clock: FakeClock, crashes: int, ran: float = 0.5) -> list[float]:
    delays = []
    for _ in range(crashes):
        policy.started()
        clock.advance(ran)
        decision = policy.crashed()
        delays.append(decision.delay)
        clock.advance(decision.delay)
    return delays


def test_first_restart_is_immediate_then_doubles_up_to_the_cap():
    clock = FakeClock()
    policy = RestartPolicy(RestartConfig(base=1, cap=10, jitter=0), clock, FixedRandom(0.0))
    assert crash_loop(policy, clock, 7) == [0, 1, 2, 4, 8, 10, 10]


def test_default_back_off_reaches_its_60_second_cap_and_never_gives_up():
    clock = FakeClock()
    policy = RestartPolicy(RestartConfig(jitter=0), clock, FixedRandom(0.0))
    delays = crash_loop(policy, clock, 30)
    assert delays[:9] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert delays[-1] == 60
    assert policy.crashes == 30


def test_jitter_shaves_a_random_fraction_off_each_delay_but_not_the_first():
    clock = FakeClock()
    config = RestartConfig(base=4, cap=100, jitter=0.25)
    policy = RestartPolicy(config, clock, FixedRandom(0.5, 1.0, 0.0))
    delays = crash_loop(policy, clock, 4)
    # nominal 0, 4, 8, 16; minus 25% x (0.5, 1.0, 0.0)
    assert delays == [0, 4 * (1 - 0.125), 8 * (1 - 0.25), 16]


def test_a_healthy_run_resets_the_back_off():
    clock = FakeClock()
    config = RestartConfig(base=1, cap=60, jitter=0, healthy_after=300)
    policy = RestartPolicy(config, clock, FixedRandom(0.0))
    assert crash_loop(policy, clock, 4) == [0, 1, 2, 4]
    policy.started()
    clock.advance(300)
    decision = policy.crashed()
    assert decision.delay == 0
    assert decision.attempt == 1
    assert "healthy" in decision.reason
    assert crash_loop(policy, clock, 2) == [1, 2]


def test_a_run_just_short_of_healthy_keeps_backing_off():
    clock = FakeClock()
    policy = RestartPolicy(RestartConfig(base=1, jitter=0, healthy_after=300), clock, FixedRandom(0.0))
    crash_loop(policy, clock, 3)
    assert crash_loop(policy, clock, 1, ran=299.9) == [4]


def test_reset_for_a_new_release_starts_over_at_once():
    clock = FakeClock()
    policy = RestartPolicy(RestartConfig(base=1, jitter=0), clock, FixedRandom(0.0))
    crash_loop(policy, clock, 5)
    policy.reset()
    assert crash_loop(policy, clock, 3) == [0, 1, 2]


def test_a_crash_before_any_start_counts_as_a_crash():
    # A launch that failed before a process existed (slug missing) never called started().
    clock = FakeClock()
    policy = RestartPolicy(RestartConfig(base=2, jitter=0), clock, FixedRandom(0.0))
    assert [policy.crashed().delay for _ in range(3)] == [0, 2, 4]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"base": 0}, "base"),
        ({"base": 10, "cap": 5}, "cap"),
        ({"jitter": 1.0}, "jitter"),
        ({"factor": 0.5}, "factor"),
        ({"healthy_after": 0}, "healthy"),
    ],
)
def test_bad_configuration_is_refused_with_a_message_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RestartConfig(**kwargs)


def test_a_handed_over_dyno_backs_off_from_where_the_previous_agent_was():
    clock = FakeClock()
    config = RestartConfig(base=1, cap=60, jitter=0, healthy_after=300)
    before = RestartPolicy(config, clock, FixedRandom(0.0))
    assert crash_loop(before, clock, 4) == [0, 1, 2, 4]
    after = RestartPolicy(config, clock, FixedRandom(0.0))
    after.resume(before.crashes)
    assert crash_loop(after, clock, 2) == [8, 16]


def test_a_run_counts_as_healthy_from_its_real_launch():
    clock = FakeClock()
    config = RestartConfig(base=1, cap=60, jitter=0, healthy_after=300)
    policy = RestartPolicy(config, clock, FixedRandom(0.0))
    crash_loop(policy, clock, 3)
    policy.started(at=clock.now - 400)  # adopted: launched 400 s ago under the previous agent
    decision = policy.crashed()
    assert decision.delay == 0 and "healthy" in decision.reason
