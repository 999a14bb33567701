"""The router's listening sockets: the connections waiting to be accepted are taken in at once.

libuv, under uvloop, accepts one connection per turn of the event loop (since libuv 1.45,
"unix: don't accept() connections in a loop", libuv#3696) and leaves the next to the next turn.
A router busy with 1000 connections turns its loop every few tens of milliseconds (a turn
handles up to 1024 ready sockets), so clients that connect together wait in the kernel's accept
queue, their requests already sent, one turn each: under bench/router_bench.py at 1000
connections about 400 new connections were taken in at some 25 a second and their requests
waited up to 7 s (the seconds-long p99), while nothing the router measures waited at all.

So the router binds and listens itself and accepts on readiness until the queue is empty, as
asyncio's own loop and nginx's `multi_accept` do, at most `ACCEPTS_PER_TURN` at a time so that
one turn stays bounded; each accepted socket becomes a transport of the running loop
(`connect_accepted_socket`, run without a Task: `_accept`). That costs more per connection than
libuv's accept in C (about 20 us of CPU against 13, bench/router_accept_cost.py), nothing per
request. Out of descriptors or memory, accepting pauses for a second (asyncio's remedy)
rather than spinning on a listening socket that stays readable.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
from collections.abc import Callable, Coroutine
from functools import partial

# As many as one turn of libuv's loop handles ready sockets: new clients keep pace with the
# established ones.
ACCEPTS_PER_TURN = 1024
# How long accepting pauses when the process is out of descriptors or memory (asyncio's
# ACCEPT_RETRY_DELAY).
ACCEPT_RETRY_DELAY = 1.0
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def bind(host: str, port: int, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """Listening sockets for every address `host` names (as loop.create_server binds them)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError as error:
        for sock in sockets:
            sock.close()
        # Named with the address, so that `cannot listen: ...` says which --listen failed.
        raise OSError(error.errno, f"{error.strerror} ({host}:{port})") from error
    return sockets


class Acceptor:
    """Accepts the connections of one listening socket into `factory`'s protocols."""

    __slots__ = ("loop", "sock", "factory", "_retry", "_closed")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False

    def start(self) -> None:
        self._retry = None
        if not self._closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting; connections already accepted carry on."""
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _accept(self) -> None:
        sock, loop, factory = self.sock, self.loop, self.factory
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # none left
            except ConnectionAbortedError:
                continue  # the client gave up while it waited
            except OSError as error:
                if error.errno not in _RESOURCE_ERRORS:
                    raise
                self._pause(error)
                return
            conn.setblocking(False)
            # connect_accepted_socket makes the transport at once and then only awaits its
            # protocol's connection_made (called soon): it is run by hand up to that wait and
            # finished once it is over, instead of through a Task per connection. Measured
            # (bench/router_accept_cost.py and a 3000-connection burst): a Task cost about
            # 2.5 us and 0.5 KB of memory more per connection.
            starting = loop.connect_accepted_socket(factory, conn)
            try:
                waiter = starting.send(None)
            except StopIteration:
                continue  # already connected (not so with uvloop or asyncio)
            except OSError:
                continue  # reset before its transport was made: nothing to answer
            waiter.add_done_callback(partial(self._started, starting))

    def _started(self, starting: Coroutine, waiter: asyncio.Future) -> None:
        """The protocol's connection_made ran (or the connection failed first): finish."""
        try:
            starting.send(None)
        except StopIteration:
            pass
        except (OSError, asyncio.CancelledError):
            pass  # reset or closed before its protocol began: the transport is closed
        except Exception as error:  # a bug: reported as the loop reports them
            self.loop.call_exception_handler({"message": "a new connection failed to start",
                                              "exception": error})

    def _pause(self, error: OSError) -> None:
        print(f"router: cannot accept connections ({error.strerror}); trying again in "
              f"{ACCEPT_RETRY_DELAY:g} s (raise the open-files limit?)", file=sys.stderr)
        self.loop.remove_reader(self.sock.fileno())
        self._retry = self.loop.call_later(ACCEPT_RETRY_DELAY, self.start)
