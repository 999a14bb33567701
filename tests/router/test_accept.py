"""Accepting connections: clients that connect together are all taken in at once.

At 1000 busy connections a turn of the router's event loop takes tens of milliseconds (it
handles up to a thousand ready sockets). If the router took in one new connection per turn
(libuv's way since 1.45), a burst of new clients waited in the kernel's accept queue for
seconds with their requests already sent: the seconds-long p99 of bench/router_bench.py at
1000 connections. The turns are counted here, not timed: `each_turn_until` checks once per turn.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket

from tests.router.conftest import app_entry, table_of, each_turn_until
from tests.router.wire import read_response

CLIENTS = 64


async def test_clients_that_connect_together_are_all_served_without_waiting_turns(
        router_factory, dyno_factory):
    dyno = await dyno_factory()
    under_test = await router_factory(table_of(app_entry("app", dynos=[dyno])))
    router = under_test.router
    # While the loop is busy (here: this test holds it), clients connect and send a request:
    # the kernel completes each handshake and the connections wait to be accepted.
    waiting = [socket.create_connection(("127.0.0.1", under_test.port)) for _ in range(CLIENTS)]
    try:
        for sock in waiting:
            sock.sendall(b"GET /burst HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
        turns = 0

        def all_taken_in() -> bool:
            nonlocal turns
            turns += 1
            return len(router.clients) == CLIENTS

        await each_turn_until(all_taken_in)
        # Accepted in the turn the router saw them, their transports set up in the next ones:
        # a few turns however many connected, not one turn per connection.
        assert turns <= 5, f"{CLIENTS} waiting connections took {turns} turns to accept"
        for sock in waiting:  # and every one of them is answered
            reader, writer = await asyncio.open_connection(sock=sock)
            assert (await read_response(reader)).status == 200
            writer.close()
    finally:
        for sock in waiting:
            sock.close()



async def test_a_router_out_of_descriptors_says_so_and_takes_the_waiting_clients_in_later(
        router_factory, dyno_factory, capfd):
    dyno = await dyno_factory()
    under_test = await router_factory(table_of(app_entry("app", dynos=[dyno])))
    waiting = [socket.create_connection(("127.0.0.1", under_test.port)) for _ in range(8)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        for sock in waiting:
            sock.sendall(b"GET /later HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
        # This process may open 3 more descriptors: the router accepts 3 of the 8, then runs
        # out (EMFILE). The limit is put back once it said so, before the 3 need a dyno.
        in_use = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 3, hard))
        said = ""

        def out_of_descriptors() -> bool:
            nonlocal said
            said += capfd.readouterr().err
            return "cannot accept connections" in said

        try:
            await each_turn_until(out_of_descriptors)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert "Too many open files" in said and "trying again in 1 s" in said
        # It goes on accepting a second later: every client is answered.
        for sock in waiting:
            reader, writer = await asyncio.open_connection(sock=sock)
            assert (await read_response(reader)).status == 200
            writer.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for sock in waiting:
            sock.close()
