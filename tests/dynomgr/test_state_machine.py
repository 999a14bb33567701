"""Dyno states: the transition table."""

from __future__ import annotations

import pytest

from dynomgr.events import DynoRef, StateChange
from dynomgr.state import DynoState as S
from dynomgr.state import IllegalTransition, check_transition

pytestmark = pytest.mark.unit

ALLOWED = {
    (S.DOWN, S.STARTING),
    (S.STARTING, S.UP),
    (S.STARTING, S.CRASHED),
    (S.STARTING, S.STOPPING),
    (S.UP, S.CRASHED),
    (S.UP, S.STOPPING),
    (S.CRASHED, S.STARTING),
    (S.CRASHED, S.DOWN),
    (S.STOPPING, S.DOWN),
    (S.STARTING, S.DOWN),  # a one-off dyno's command exited
    (S.UP, S.DOWN),
}


@pytest.mark.parametrize("old", list(S))
@pytest.mark.parametrize("new", list(S))
def test_only_the_documented_transitions_are_allowed(old, new):
    if (old, new) in ALLOWED:
        check_transition("web.1", old, new)
    else:
        with pytest.raises(IllegalTransition, match=f"web.1: no transition from {old} to {new}"):
            check_transition("web.1", old, new)


REF = DynoRef(app="hello", name="web.1", type="web", release=7, instance="abcd")


def test_state_change_message_uses_herokus_wording_with_the_address_when_routable():
    up = StateChange(REF, S.STARTING, S.UP, at=0.0, address="127.0.0.1:20001")
    assert up.message() == "State changed from starting to up (127.0.0.1:20001)"
    crashed = StateChange(REF, S.UP, S.CRASHED, at=0.0, address="127.0.0.1:20001")
    assert crashed.message() == "State changed from up to crashed"
