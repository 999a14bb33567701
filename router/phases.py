"""An exchange's phases and their allowed transitions, as one table.

    QUEUED ──▶ CONNECTING ──▶ FORWARDING ──▶ RESPONDING ──▶ DONE
      │  ▲         │ ▲  (another dyno)  │  (retry on a fresh connection)
      │  └─(boot)  └─┘                  └──▶ CONNECTING
      └──────────────── any phase ──────────────────────────▶ DONE

`Exchange._move` checks a transition against `ALLOWED`; the two transitions taken on every
request (QUEUED -> FORWARDING with a pooled connection, FORWARDING -> RESPONDING,
RESPONDING -> DONE) are assigned directly where they happen, each marked with a comment.
"""

from __future__ import annotations

import enum


class Phase(enum.IntEnum):
    # An IntEnum: hashing and comparing stay in C on the request path.
    QUEUED = 0  # behind a pipelined request, or waiting for a booting app
    CONNECTING = 1  # a dyno was chosen; its connection is being opened
    FORWARDING = 2  # the request goes to the dyno; no response head yet
    RESPONDING = 3  # the response head went to the client; the body streams
    DONE = 4


QUEUED, CONNECTING, FORWARDING, RESPONDING, DONE = (
    Phase.QUEUED, Phase.CONNECTING, Phase.FORWARDING, Phase.RESPONDING, Phase.DONE)

ALLOWED: dict[Phase, frozenset[Phase]] = {
    QUEUED: frozenset({QUEUED, CONNECTING, FORWARDING, DONE}),
    CONNECTING: frozenset({CONNECTING, FORWARDING, DONE}),
    FORWARDING: frozenset({CONNECTING, RESPONDING, DONE}),
    RESPONDING: frozenset({DONE}),
    DONE: frozenset(),
}

# Bit `to` of ALLOWED_MASK[phase] is set when phase -> to is allowed (cheap to test).
ALLOWED_MASK = tuple(sum(1 << to for to in ALLOWED[phase]) for phase in Phase)
