"""The request path's state machines (router/states.py): the tables say what the module's
diagrams say, and the objects refuse, by name, a transition the tables do not allow."""

from __future__ import annotations

import pytest

from router import states
from router.client import ClientConnection
from router.config import RouterConfig
from router.exchange import Exchange
from router.headers import NONE
from router.server import Router
from router.states import (CLIENT_STATES, PHASES, RESPONSE_STATES, ClientState, Phase,
                           ResponseState)
from tests.router.conftest import MemorySink

pytestmark = pytest.mark.unit

TABLES = [(Phase, PHASES, states.PHASE_ALLOWED),
          (ClientState, CLIENT_STATES, states.CLIENT_ALLOWED),
          (ResponseState, RESPONSE_STATES, states.RESPONSE_ALLOWED)]


def reachable(table, start):
    seen, todo = {start}, [start]
    while todo:
        for following in table[todo.pop()]:
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


@pytest.mark.parametrize("kind, table, fast", TABLES, ids=lambda value: getattr(
    value, "__name__", ""))
def test_each_table_has_a_row_per_state_and_its_fast_form_says_the_same(kind, table, fast):
    assert set(table) == set(kind)
    for old in kind:
        allowed = {new for new in kind if fast[old][new]}
        assert allowed == set(table[old]), old.name


def test_the_plain_ints_of_the_request_path_are_the_enums_values():
    assert (states.QUEUED, states.CONNECTING, states.FORWARDING, states.RESPONDING,
            states.DONE) == tuple(Phase)
    assert (states.OPEN, states.REFUSING, states.LINGERING, states.CLOSING,
            states.TUNNEL) == tuple(ClientState)
    assert (states.AWAITING, states.HEAD, states.BODY, states.ENDED,
            states.REUSABLE) == tuple(ResponseState)


def test_every_phase_can_end_and_done_is_final():
    for phase in Phase:
        assert Phase.DONE in reachable(PHASES, phase)
    assert PHASES[Phase.DONE] == frozenset()


def test_the_usual_requests_are_allowed_and_a_response_head_that_left_is_final():
    usual = [Phase.QUEUED, Phase.FORWARDING, Phase.RESPONDING, Phase.DONE]  # a pooled connection
    fresh = [Phase.QUEUED, Phase.CONNECTING, Phase.FORWARDING, Phase.RESPONDING, Phase.DONE]
    for path in (usual, fresh):
        assert all(new in PHASES[old] for old, new in zip(path, path[1:]))
    # Once a response head went out the exchange only ends, or (its head withheld after all)
    # goes back to forwarding so that the router's page can still be sent.
    assert PHASES[Phase.RESPONDING] == {Phase.FORWARDING, Phase.DONE}


def test_a_client_connection_ends_closed_unless_it_became_a_tunnel():
    for state in ClientState:
        if state is ClientState.TUNNEL:
            assert CLIENT_STATES[state] == frozenset()
        else:
            assert ClientState.CLOSING in reachable(CLIENT_STATES, state)
    assert ClientState.OPEN not in set().union(*CLIENT_STATES.values())  # never reopens


def test_every_response_state_leads_back_to_awaiting_the_next_one():
    for state in ResponseState:
        assert ResponseState.AWAITING in reachable(RESPONSE_STATES, state)
    # Only a complete response can be reused, and only its end decides which.
    assert RESPONSE_STATES[ResponseState.BODY] >= {ResponseState.ENDED, ResponseState.REUSABLE}
    assert ResponseState.REUSABLE not in RESPONSE_STATES[ResponseState.HEAD]


def test_the_refusal_names_the_machine_and_both_states():
    error = states.refused(Phase, states.DONE, states.FORWARDING)
    assert str(error) == "Phase: cannot go from DONE to FORWARDING"


def exchange() -> Exchange:
    router = Router(RouterConfig(), sinks=[MemorySink()])
    client = ClientConnection(router)
    return Exchange(client, router, b"GET", b"/", b"GET / HTTP/1.1\r\n\r\n", b"app1.localhost",
                    b"id", b"10.0.0.1", NONE, True, True, 0.0, 0.0)


def test_an_exchange_refuses_a_response_before_its_request_went_to_a_dyno():
    queued = exchange()
    with pytest.raises(AssertionError, match="Phase: cannot go from QUEUED to RESPONDING"):
        queued.response_began(200, True)
    assert queued.phase == states.QUEUED


def test_a_client_connection_handed_to_a_tunnel_cannot_be_handed_over_again():
    router = Router(RouterConfig(), sinks=[MemorySink()])
    client = ClientConnection(router)
    client.handed_over()
    with pytest.raises(AssertionError, match="ClientState: cannot go from TUNNEL to TUNNEL"):
        client.handed_over()
