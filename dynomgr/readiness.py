"""Is a web dyno up? Its port accepts connections (and its health check, if any, passes).

Routers learn about a dyno from its `up` report, so the delay between the dyno calling listen()
and that report is time an app is unreachable. Connecting to every booting dyno's port every few
milliseconds would cost 500 × 200 refused connections a second during a mass start. Instead one
`ListenWatcher` asks the kernel for all listening TCP sockets with a single netlink sock_diag
query per tick (about 70 µs) while any dyno is booting, and idles otherwise. A socket in LISTEN
state accepts connections (the kernel completes handshakes into its backlog), whatever address
it is bound to, so that is the answer; no connection is needed, nor any address resolution.
Where netlink sock_diag is not available, each tick tries a connection to each waiting port.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Callable

from dynomgr.health import Check, HealthPolicy, Verdict

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10
_NLMSG_HDR = struct.Struct("=LHHLL")
# inet_diag_req_v2: family, protocol, ext, pad, states; then a zeroed inet_diag_sockid (48 bytes).
_REQ = struct.Struct("=BBBBI48x")
_SPORT = struct.Struct(">H")  # inet_diag_msg.id.idiag_sport, 4 bytes into the message


class NetlinkListening:
    """The set of TCP ports something listens on, from the kernel in one round trip."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def ports(self) -> set[int]:
        return self._query(socket.AF_INET) | self._query(socket.AF_INET6)

    def _query(self, family: int) -> set[int]:
        self._seq += 1
        body = _REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
        header = _NLMSG_HDR.pack(
            _NLMSG_HDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0
        )
        self._sock.send(header + body)
        ports: set[int] = set()
        while True:
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSG_HDR.size <= len(data):
                length, kind, _, seq, _ = _NLMSG_HDR.unpack_from(data, offset)
                if kind == NLMSG_DONE and seq == self._seq:
                    return ports
                if kind == NLMSG_ERROR:
                    raise OSError("netlink sock_diag query failed")
                if seq == self._seq:
                    ports.add(_SPORT.unpack_from(data, offset + _NLMSG_HDR.size + 4)[0])
                offset += (length + 3) & ~3
                if length == 0:
                    break


class ListenWatcher:
    """Wakes each waiter as soon as its port is listening. One poller for all booting dynos."""

    def __init__(self, interval: float, listening: Callable[[], set[int]] | None = None) -> None:
        self.interval = interval
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = listening
        self.method = "netlink sock_diag" if listening is not None else "connect"
        self.polls = 0

    @classmethod
    def create(cls, interval: float) -> ListenWatcher:
        try:
            probe = NetlinkListening()
            probe.ports()
        except OSError:
            return cls(interval, None)
        return cls(interval, probe.ports)

    def watch(self, port: int, host: str = "127.0.0.1") -> asyncio.Future[None]:
        """A future that resolves once `port` is listening (and so accepts TCP connections:
        the kernel completes handshakes into the listen backlog, whatever address the socket
        is bound to). With the connect fallback, once a connection to `host` succeeded.
        Register before the dyno starts, so that no step of its launch delays the answer;
        `forget()` it when no longer interested."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(port, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(host), name="listen-watcher")
        return future

    def forget(self, port: int, future: asyncio.Future[None]) -> None:
        self._discard(port, future)
        if not future.done():
            future.cancel()

    async def wait(self, port: int, host: str = "127.0.0.1") -> None:
        future = self.watch(port, host)
        try:
            await future
        finally:
            self.forget(port, future)

    def _discard(self, port: int, future: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(port)
        if waiters and future in waiters:
            waiters.remove(future)
            if not waiters:
                del self._waiters[port]

    async def _poll(self, host: str) -> None:
        while self._waiters:
            self.polls += 1
            if self._listening is not None:
                try:
                    ready = self._listening() & self._waiters.keys()
                except OSError:
                    self._listening, self.method = None, "connect"
                    continue
            else:
                ports = list(self._waiters)
                results = await asyncio.gather(*(accepts(host, p) for p in ports))
                ready = {p for p, ok in zip(ports, results) if ok}
            for port in ready:
                for future in self._waiters.pop(port, []):
                    if not future.done():
                        future.set_result(None)
            await asyncio.sleep(self.interval)

    @property
    def idle(self) -> bool:
        """No poll is running (nobody waits): the watcher costs nothing."""
        return self._task is None or self._task.done()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    return True


async def poll_health(port: int, policy: HealthPolicy, interval: float,
                      changed: Callable[[Verdict], None]) -> None:
    """Check a running web dyno's health path every `interval` (each check answered within
    the policy's timeout or counted failed) until cancelled with its life; tell `changed` of
    each change of health the policy decides."""
    while True:
        await asyncio.sleep(interval)
        status = await health_check_status("127.0.0.1", port, policy.path, policy.timeout)
        verdict = policy.observe(Check(status))
        if verdict is not Verdict.SAME:
            changed(verdict)


async def health_check_status(host: str, port: int, path: str, timeout: float) -> int | None:
    """Status code of `GET path` on the dyno, or None when it did not answer in time."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return None
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: dynomesh-dynomgr\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("latin-1"))
        status_line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, asyncio.TimeoutError, ValueError):
        # ValueError: a first line longer than the reader's limit, not an HTTP status line.
        return None
    finally:
        writer.close()
    parts = status_line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None
