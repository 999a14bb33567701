"""Port readiness: the listen watcher on real sockets (netlink sock_diag, and the connect fallback)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from dynomgr.health import HealthPolicy, Verdict
from dynomgr.readiness import ListenWatcher, NetlinkListening, health_check_status, poll_health


def netlink_available() -> bool:
    try:
        NetlinkListening().ports()
    except OSError:
        return False
    return True


@pytest.fixture(params=["netlink", "connect"])
def watcher(request):
    if request.param == "netlink":
        if not netlink_available():
            pytest.skip("netlink sock_diag is not available here")
        w = ListenWatcher.create(0.002)
        assert w.method == "netlink sock_diag"
    else:
        w = ListenWatcher(0.002, None)
    yield w
    w.close()


async def a_poll_went_by(watcher: ListenWatcher) -> None:
    """Return once the watcher has looked at every port it watches: one poll looks at all of
    them, and a port listening from the start is seen by the first."""
    with socket.socket() as witness:
        witness.bind(("127.0.0.1", 0))
        witness.listen()
        await asyncio.wait_for(watcher.watch(witness.getsockname()[1]), 5)


async def test_a_port_is_ready_once_listening_not_merely_bound(watcher):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", 0))
    port = sock.getsockname()[1]
    try:
        waiting = watcher.watch(port)
        await a_poll_went_by(watcher)
        assert not waiting.done()  # bound is not enough
        sock.listen()
        await asyncio.wait_for(waiting, 5)
    finally:
        sock.close()


async def test_one_poller_serves_many_waiting_ports(watcher):
    socks = []
    for _ in range(20):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    try:
        tasks = [watcher.watch(s.getsockname()[1]) for s in socks]
        await a_poll_went_by(watcher)
        assert not any(task.done() for task in tasks)
        for s in socks:
            s.listen()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    finally:
        for s in socks:
            s.close()
    # The poller stops once nobody waits.
    await asyncio.wait_for(asyncio.shield(watcher._task), 5)
    assert watcher.idle


async def test_health_check_status_reads_the_status_line():
    async def handle(reader, writer):
        request = await reader.readline()
        status = b"200 OK" if b"/ok " in request else b"503 Service Unavailable"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert await health_check_status("127.0.0.1", port, "/ok", timeout=2) == 200
        assert await health_check_status("127.0.0.1", port, "/booting", timeout=2) == 503
    assert await health_check_status("127.0.0.1", port, "/ok", timeout=2) is None


async def test_the_running_health_check_reports_out_after_n_failures_and_back_after_a_pass():
    answers = [b"503 Service Unavailable", b"HTTP/1.1 200 OK" * 10000, b"200 OK"]
    changes: asyncio.Queue = asyncio.Queue()

    async def handle(reader, writer):
        await reader.readline()
        # 503, then a first line too long to be a status line, then healthy for good.
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        writer.write(b"HTTP/1.1 " + answer + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    policy = HealthPolicy("/health", failures=2, timeout=2)
    async with server:
        poll = asyncio.ensure_future(poll_health(port, policy, 0.001, changes.put_nowait))
        try:
            async with asyncio.timeout(10):
                assert await changes.get() is Verdict.UNHEALTHY
                assert policy.reason() == "GET /health → no HTTP answer in 2 s ×2"
                assert await changes.get() is Verdict.HEALTHY
        finally:
            poll.cancel()
