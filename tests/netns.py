"""Hosts on a private network made of Linux network namespaces, for multi-host tests and benches.

Each host is a namespace of its own with a loopback and one veth (`eth0`) holding an address in
a private /24; the other ends of the veths are ports of a bridge that lives in one more
namespace, so that building the network changes nothing in the root namespace (no interface,
address or route appears there) and deleting the namespaces removes all of it. A process
started with `host.argv(...)` (`ip netns exec`) sees only its host's network; `host.entered()`
moves the calling thread alone into a host, so the sockets it opens (and the threads and
processes it starts) are that host's.

Needs root (CAP_SYS_ADMIN) and iproute2: `unavailable()` says why it cannot be used.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000  # <sched.h>: setns() into a network namespace
SUBNET = "10.213.7"  # a /24 of RFC 1918 space, seen only inside these namespaces
BRIDGE = "br0"


def ip(*args: str) -> str:
    """Run `ip ARGS`; its stdout. A failure raises naming the command and what ip said."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({done.returncode}): "
                           f"{done.stderr.strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN); run the tests as root"
    if shutil.which("ip") is None:
        return "no `ip` command: install iproute2"
    probe = f"dmprobe-{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except (RuntimeError, OSError) as error:
        return f"cannot create a network namespace: {error}"
    ip("netns", "delete", probe)
    return None


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({path}): {os.strerror(error)}")
    finally:
        os.close(fd)


def pids_in(namespace: str) -> list[int]:
    return [int(pid) for pid in ip("netns", "pids", namespace).split()]


class Host:
    """One namespace on the network: a name, its address, and the processes in it."""

    def __init__(self, name: str, namespace: str, address: str) -> None:
        self.name = name
        self.namespace = namespace
        self.address = address

    def __repr__(self) -> str:
        return f"Host({self.name} {self.address})"

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def pids(self) -> list[int]:
        return pids_in(self.namespace)

    @contextlib.contextmanager
    def entered(self) -> Iterator[Host]:
        """The calling thread in this host's network until the block ends (other threads stay
        where they are; threads and processes started inside inherit it)."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(f"/run/netns/{self.namespace}")
            try:
                yield self
            finally:
                _setns(f"/proc/self/fd/{home}")
        finally:
            os.close(home)

    def kill_all(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL every process of this host at once, as a power loss does: every one is
        stopped first (none can react to another's death, e.g. an agent restarting its dyno),
        then killed; repeated until none is left (bounded). The pids killed."""
        killed: list[int] = []
        deadline = time.monotonic() + timeout
        while pids := self.pids():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: processes {pids} outlived SIGKILL")
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            killed.extend(p for p in pids if p not in killed)
            time.sleep(0.02)  # bounded: the kernel reaps them; `pids` is read again
        return killed


class Network:
    """Hosts named `names` on one bridge; `create()` builds it, `destroy()` removes it all
    (killing what still runs in it). Names are prefixed with the pid, so two runs never meet."""

    def __init__(self, names: list[str], prefix: str | None = None) -> None:
        self.prefix = prefix or f"dm{os.getpid()}"
        self.bridge_ns = f"{self.prefix}-bridge"
        self.hosts = {name: Host(name, f"{self.prefix}-{name}", f"{SUBNET}.{index + 2}")
                      for index, name in enumerate(names)}
        if len(self.hosts) > 250:
            raise ValueError("a /24 holds at most 250 hosts here")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def create(self) -> Network:
        ip("netns", "add", self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", self.bridge_ns, "link", "set", BRIDGE, "up")
        for index, host in enumerate(self.hosts.values()):
            port = f"p{index}"  # the bridge's end of this host's veth
            ip("netns", "add", host.namespace)
            ip("-n", host.namespace, "link", "set", "lo", "up")
            ip("-n", host.namespace, "link", "add", "eth0", "type", "veth",
               "peer", "name", port, "netns", self.bridge_ns)
            ip("-n", self.bridge_ns, "link", "set", port, "master", BRIDGE, "up")
            ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.namespace, "link", "set", "eth0", "up")
        return self

    def destroy(self) -> None:
        """Kill every process in every host, then delete the namespaces (the veths and the
        bridge go with them). Safe to call on a half-built network."""
        existing = set(ip("netns", "list").split())
        errors = []
        for host in self.hosts.values():
            if host.namespace in existing:
                try:
                    host.kill_all()
                except AssertionError as error:
                    errors.append(str(error))
        for namespace in [h.namespace for h in self.hosts.values()] + [self.bridge_ns]:
            if namespace in existing:
                ip("netns", "delete", namespace)
        if errors:
            raise AssertionError("; ".join(errors))


def leftovers(prefix: str) -> list[str]:
    """Namespaces of a network with this prefix that still exist (for tests of the helper)."""
    return [name for name in ip("netns", "list").split() if name.startswith(prefix + "-")]

