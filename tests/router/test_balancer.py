"""P2CBalancer: the less loaded of two random dynos."""

import random
from collections import Counter
from dataclasses import dataclass

from router.balancer import P2CBalancer
import pytest

pytestmark = pytest.mark.unit


@dataclass(eq=False)
class FakeDyno:
    name: str
    in_flight: int = 0


class ScriptedRandom(random.Random):
    """Returns the given floats in order, so a test names the two samples exactly."""

    def __init__(self, *values: float) -> None:
        super().__init__()
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def test_no_candidates_gives_none():
    assert P2CBalancer(random.Random(1)).choose([]) is None


def test_one_candidate_is_always_chosen():
    only = FakeDyno("web.1", in_flight=99)
    assert P2CBalancer(random.Random(1)).choose([only]) is only


def test_of_two_the_less_loaded_wins():
    busy, idle = FakeDyno("web.1", 5), FakeDyno("web.2", 1)
    balancer = P2CBalancer(random.Random(1))
    assert all(balancer.choose([busy, idle]) is idle for _ in range(50))


def test_two_equally_loaded_are_chosen_at_random():
    a, b = FakeDyno("web.1"), FakeDyno("web.2")
    balancer = P2CBalancer(ScriptedRandom(0.2, 0.7))
    assert balancer.choose([a, b]) is a
    assert balancer.choose([a, b]) is b


def test_samples_two_distinct_candidates_and_takes_the_less_loaded():
    pool = [FakeDyno("web.1", 3), FakeDyno("web.2", 0), FakeDyno("web.3", 1)]
    # first index int(0.0*3)=0; second int(0.2*2)=0 -> shifted past the first to 1
    assert P2CBalancer(ScriptedRandom(0.0, 0.2)).choose(pool).name == "web.2"
    # first index 0; second int(0.6*2)=1 -> shifted to 2: web.1 (3) vs web.3 (1)
    assert P2CBalancer(ScriptedRandom(0.0, 0.6)).choose(pool).name == "web.3"
    # first index int(0.9*3)=2; second int(0.9*2)=1 (below 2, kept) -> web.3 vs web.2
    assert P2CBalancer(ScriptedRandom(0.9, 0.9)).choose(pool).name == "web.2"
    # first index 2, second int(0.1*2)=0 -> web.3 (1) vs web.1 (3)
    assert P2CBalancer(ScriptedRandom(0.9, 0.1)).choose(pool).name == "web.3"


def test_the_busiest_dyno_is_never_chosen_and_the_rest_share_the_load():
    pool = [FakeDyno(f"web.{i}", in_flight=i) for i in range(1, 5)]
    balancer = P2CBalancer(random.Random(42))
    picks = Counter(balancer.choose(pool).name for _ in range(4000))
    assert "web.4" not in picks
    # the idlest wins every pair it is in: 3 of the 6 pairs
    assert 0.45 < picks["web.1"] / 4000 < 0.55
    assert picks["web.3"] > 0


def test_equal_load_spreads_evenly():
    pool = [FakeDyno(f"web.{i}") for i in range(5)]
    balancer = P2CBalancer(random.Random(3))
    picks = Counter(balancer.choose(pool).name for _ in range(10000))
    assert all(1600 < picks[d.name] < 2400 for d in pool), picks
