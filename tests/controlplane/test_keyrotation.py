"""KeyRotation (controlplane/keyrotation.py): when the routers' signing key is due (pure)."""

import pytest

from controlplane.keyrotation import KeyRotation

pytestmark = pytest.mark.unit

DAY = 86400.0


def test_a_key_is_due_at_the_period_and_a_missing_one_at_once():
    rotation = KeyRotation(30 * DAY)
    assert rotation.due(None) and rotation.wait(None) == 1.0
    assert not rotation.due(30 * DAY - 1) and rotation.due(30 * DAY)


def test_the_loop_looks_again_when_the_key_is_due_but_at_least_hourly_and_at_most_each_second():
    rotation = KeyRotation(30 * DAY)
    assert rotation.wait(0.0) == 3600.0  # a clock that jumps is noticed within an hour
    assert rotation.wait(30 * DAY - 10) == 10.0
    assert rotation.wait(31 * DAY) == 1.0  # overdue (another node is rotating): soon, not busy
    assert KeyRotation(5.0).wait(2.0) == 3.0


def test_a_period_must_be_positive():
    with pytest.raises(ValueError, match="affinity-key-rotation"):
        KeyRotation(0)
