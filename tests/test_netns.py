"""tests/netns.py, the network of hosts the multi-host test runs on: hosts reach each other on
their addresses, the root namespace is left as it was, and destroying the network kills what
runs in it and removes every namespace."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.netns import SUBNET, Network, ip, leftovers, unavailable

ECHO = ("import socket; s = socket.create_server(('0.0.0.0', 7000)); print('ready', flush=True);"
        " c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()")


@pytest.fixture
def network():
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    net = Network(["a", "b"], prefix=f"dmt{id(object()) % 10**6}")
    try:
        yield net.create()
    finally:
        net.destroy()


def root_links() -> str:
    return ip("-o", "link", "show")


def test_hosts_reach_each_other_by_address_and_nothing_changes_in_the_root(network):
    a, b = network["a"], network["b"]
    assert network.bridge_ns not in root_links()
    assert SUBNET not in ip("-o", "addr", "show")  # the addresses are the hosts' alone
    server = subprocess.Popen(b.argv([sys.executable, "-c", ECHO]), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout.readline() == "ready\n"
        with a.entered():
            with socket.create_connection((b.address, 7000), timeout=5) as conn:
                assert conn.recv(100).decode() == a.address  # b saw a's own address
        assert server.wait(10) == 0
    finally:
        server.kill()
        server.wait()


def test_destroy_kills_what_runs_on_the_hosts_and_removes_the_namespaces():
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    links = root_links()
    net = Network(["a"], prefix=f"dmt{id(object()) % 10**6}").create()
    try:
        sleeper = subprocess.Popen(net["a"].argv([sys.executable, "-c", ECHO]),
                                   stdout=subprocess.PIPE, text=True)
        assert sleeper.stdout.readline() == "ready\n"  # running inside the host
        assert net["a"].pids() == [sleeper.pid]
    finally:
        net.destroy()
    assert sleeper.wait(10) == -9
    assert leftovers(net.prefix) == []
    assert root_links() == links
