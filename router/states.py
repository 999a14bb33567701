"""The states of the request path's three objects and their allowed transitions, as tables.

An `Exchange` (exchange.py) goes through phases; a `ClientConnection` (client.py) and an
`UpstreamConnection` (upstream.py) each have one state instead of a cluster of booleans. Each
object is the only writer of its own state, and every change goes through its `_to`/`_move`,
which checks the table here (a bit test) and raises `AssertionError` naming both states on a
transition the table does not allow: a bug in the router, never the peer's doing.

The enums name the states (for messages, docs and tests); the request path stores and compares
the plain ints below them, which compiled code (router/compiled.py) keeps as C ints.

Exchange phases:

    QUEUED ──▶ CONNECTING ──▶ FORWARDING ──▶ RESPONDING ──▶ DONE
      │  ▲         │ ▲  (another dyno)  │ ▲                  ▲
      │  └─(boot)  └─┘                  │ └─ RESPONDING: a refused response whose head
      │                                 │    never left (a page can still go)
      │                                 └──▶ CONNECTING (retry on a fresh connection)
      └──────────────── any phase ────────────────────────────┘

Client connection: OPEN reads and answers requests. REFUSING: a bad request came while an
earlier one is being answered; nothing more is read, its page goes once the earlier one is done.
LINGERING: the last answer went out; what the client still sends is read and dropped for a
moment (nginx's lingering close). CLOSING: the transport is closed or closing. TUNNEL: handed to
a tunnel after a 101 (tunnel.py); HTTP is over on it.

    OPEN ──▶ REFUSING ──▶ LINGERING ──▶ CLOSING
      │  └──────────────────▲  │ ▲          ▲
      │                        └─┼──────────┤
      └──────────────────────────┴──────────┘   OPEN ──▶ TUNNEL

Dyno connection, per response: AWAITING (no byte of it yet; also while pooled), HEAD (bytes came,
the final head is not complete: interim responses), BODY (the final head was made for the
client; the body streams), then ENDED (complete; the connection closes after it) or REUSABLE
(complete; the dyno keeps it open, it may be pooled). Detaching from the exchange starts the next
response at AWAITING.

    AWAITING ──▶ HEAD ──▶ BODY ──▶ ENDED | REUSABLE ──▶ AWAITING
"""

from __future__ import annotations

import enum


class Phase(enum.IntEnum):
    QUEUED = 0  # behind a pipelined request, or waiting for a booting app or in the backlog
    CONNECTING = 1  # a dyno was chosen; its connection is being opened
    FORWARDING = 2  # the request goes to the dyno; no response head yet
    RESPONDING = 3  # the response head went to the client; the body streams
    DONE = 4


class ClientState(enum.IntEnum):
    OPEN = 0
    REFUSING = 1
    LINGERING = 2
    CLOSING = 3
    TUNNEL = 4


class ResponseState(enum.IntEnum):
    AWAITING = 0
    HEAD = 1
    BODY = 2
    ENDED = 3
    REUSABLE = 4


# Plain ints for the request path (enum members cost an attribute lookup and stay objects).
QUEUED, CONNECTING, FORWARDING, RESPONDING, DONE = (int(phase) for phase in Phase)
OPEN, REFUSING, LINGERING, CLOSING, TUNNEL = (int(state) for state in ClientState)
AWAITING, HEAD, BODY, ENDED, REUSABLE = (int(state) for state in ResponseState)

PHASES: dict[Phase, frozenset[Phase]] = {
    Phase.QUEUED: frozenset({Phase.QUEUED, Phase.CONNECTING, Phase.FORWARDING, Phase.DONE}),
    Phase.CONNECTING: frozenset({Phase.CONNECTING, Phase.FORWARDING, Phase.DONE}),
    Phase.FORWARDING: frozenset({Phase.CONNECTING, Phase.RESPONDING, Phase.DONE}),
    Phase.RESPONDING: frozenset({Phase.FORWARDING, Phase.DONE}),
    Phase.DONE: frozenset(),
}

CLIENT_STATES: dict[ClientState, frozenset[ClientState]] = {
    ClientState.OPEN: frozenset({ClientState.REFUSING, ClientState.LINGERING,
                                 ClientState.CLOSING, ClientState.TUNNEL}),
    ClientState.REFUSING: frozenset({ClientState.LINGERING, ClientState.CLOSING}),
    ClientState.LINGERING: frozenset({ClientState.CLOSING}),
    ClientState.CLOSING: frozenset({ClientState.CLOSING}),  # closed, then told it was lost
    ClientState.TUNNEL: frozenset(),
}

RESPONSE_STATES: dict[ResponseState, frozenset[ResponseState]] = {
    # (AWAITING -> AWAITING: detached before any byte of a response came)
    ResponseState.AWAITING: frozenset({ResponseState.HEAD, ResponseState.AWAITING}),
    ResponseState.HEAD: frozenset({ResponseState.BODY, ResponseState.AWAITING}),
    ResponseState.BODY: frozenset({ResponseState.ENDED, ResponseState.REUSABLE,
                                   ResponseState.AWAITING}),
    ResponseState.ENDED: frozenset({ResponseState.AWAITING}),
    ResponseState.REUSABLE: frozenset({ResponseState.AWAITING}),
}


def allowed(table: dict) -> tuple[tuple[bool, ...], ...]:
    """allowed(table)[old][new] is True when old -> new is in the table: two tuple indexes,
    the cheapest test on the request path (interpreted or compiled)."""
    return tuple(tuple(new in table[old] for new in sorted(table)) for old in sorted(table))


PHASE_ALLOWED = allowed(PHASES)
CLIENT_ALLOWED = allowed(CLIENT_STATES)
RESPONSE_ALLOWED = allowed(RESPONSE_STATES)


def refused(kind: type[enum.IntEnum], old: int, new: int) -> AssertionError:
    """The error for a transition the table does not allow (a bug in the router)."""
    return AssertionError(f"{kind.__name__}: cannot go from {kind(old).name} to {kind(new).name}")
