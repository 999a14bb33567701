"""The rendezvous of a one-off dyno's two ends (pure asyncio: no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.attach import AttachRefused, Rendezvous, Side

pytestmark = pytest.mark.unit


async def test_the_two_ends_meet_whichever_comes_first():
    rendezvous = Rendezvous()
    caller = asyncio.ensure_future(rendezvous.meet("d-1", Side.CALLER, "cli-ws", 5))
    await asyncio.sleep(0)  # the caller is waiting (one loop turn; no time passes)
    assert rendezvous.waiting() == 1
    assert await rendezvous.meet("d-1", Side.DYNO, "dyno-ws", 5) == "cli-ws"
    assert await caller == "dyno-ws"
    assert rendezvous.waiting() == 0


async def test_an_end_that_waits_in_vain_leaves_nothing_behind():
    rendezvous = Rendezvous()
    assert await rendezvous.meet("d-1", Side.DYNO, "dyno-ws", 0.01) is None
    assert rendezvous.waiting() == 0
    late = asyncio.ensure_future(rendezvous.meet("d-1", Side.CALLER, "cli-ws", 0.01))
    assert await late is None  # the dyno's end gave up: a late caller does not meet it


async def test_one_end_attaches_once_and_a_cancelled_wait_is_forgotten():
    rendezvous = Rendezvous()
    first = asyncio.ensure_future(rendezvous.meet("d-1", Side.CALLER, "cli-ws", 5))
    await asyncio.sleep(0)  # the first caller is waiting (one loop turn)
    with pytest.raises(AttachRefused, match="caller end of this dyno's session is attached"):
        await rendezvous.meet("d-1", Side.CALLER, "other-ws", 5)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert rendezvous.waiting() == 0
