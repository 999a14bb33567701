"""The distributed platform on a network of hosts (tests/netns.py), driven as a user drives it.

Hosts: `db` (PostgreSQL), `control1` and `control2` (two control nodes sharing it), `vm1`..`vm3`
(a dyno manager each, its dynos listening on the VM's address), `router1` and `router2`, and
`client`, where the test itself runs its CLI commands, API reads and requests (`MultiHost`
moves the calling thread there). Every part is the real `dynomesh` command started with
`ip netns exec`, with short control-plane timings so that a lost VM is noticed in seconds.

The control nodes share one home directory, as on a shared filesystem: the local slug store is
per node, and a dyno manager downloads its slug from whichever node it follows.

Used by tests/e2e/test_multihost.py and bench/multihost_bench.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import dynomesh_argv, dynomesh_env
from tests.e2e.harness import Api, Cli, ProcessLines, RouterClient, poll, shared_tmpdir
from tests.netns import SUBNET, Host, Network
from tests.pgcluster import PostgresCluster, find_bindir

CONTROLS = ("control1", "control2")
VMS = ("vm1", "vm2", "vm3")
ROUTERS = ("router1", "router2")
HOSTS = ("db", *CONTROLS, *VMS, *ROUTERS, "client")
API_PORT, HTTP_PORT, ADMIN_PORT, PG_PORT = 5050, 8080, 8081, 5432


@dataclass(frozen=True)
class Timings:
    """Short control-plane timings (seconds); the defaults are Heroku-like and slow for a test."""
    # A VM silent this long is lost (default 15): above an agent upgrade's silence (a Python
    # start-up and the adoption, ~3 s on a busy 2-core machine) plus a heartbeat.
    agent_timeout: float = 5.0
    heartbeat: float = 0.5  # dyno managers heart-beat this often (default 5)
    startup_grace: float = 3.0  # a new leader declares nothing lost this long (default 30)
    feed_heartbeat: float = 1.0
    take_out_grace: float = 0.2
    stop_timeout: float = 5.0  # SIGKILL a dyno this long after SIGTERM (default 30)


class Vm:
    """One VM: its host and its dyno manager (replaceable: an upgrade starts another)."""

    def __init__(self, host: Host, argv: list[str], data_dir: Path) -> None:
        self.host = host
        self.id = host.name
        self.argv = argv
        self.data_dir = data_dir
        self.agent = self.start("dynomgr")

    def start(self, name: str) -> ProcessLines:
        agent = ProcessLines(self.argv, dynomesh_env(), name=f"{name} on {self.id}")
        agent.wait_for(r"dynomgr: running \d+ dynos from assignment feed")
        return agent

    @property
    def admin(self) -> str:
        return f"http://{self.host.address}:{ADMIN_PORT}"

    def dynos(self) -> list[dict]:
        """What the agent itself runs (its admin /dynos)."""
        with urllib.request.urlopen(f"{self.admin}/dynos", timeout=10) as response:
            return json.loads(response.read())["dynos"]


class MultiHost:
    """The parts, started in order by `start()`; `stop()` ends them (the network's
    destruction kills whatever is left)."""

    def __init__(self, network: Network, timings: Timings = Timings()) -> None:
        self.net = network
        self.timings = timings
        self.work = shared_tmpdir("dynomesh-multihost-")
        self.home = self.work / "control"  # shared by both control nodes (slugs, credentials)
        self.pg: PostgresCluster | None = None
        self.controls: dict[str, ProcessLines] = {}
        self.nodes: dict[str, str] = {}  # control node id -> its host's name
        self.routers: dict[str, ProcessLines] = {}
        self.vms: dict[str, Vm] = {}

    # --- the parts ---------------------------------------------------------------------------

    def control_url(self, name: str) -> str:
        return f"http://{self.net[name].address}:{API_PORT}"

    def urls_from(self, first: str) -> str:
        """Both control URLs, `first` first (followers spread over the nodes)."""
        return ",".join(self.control_url(n) for n in sorted(CONTROLS, key=lambda n: n != first))

    def start(self) -> MultiHost:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries: install the `postgresql` package")
        db = self.net["db"]
        self.pg = PostgresCluster(bindir, PG_PORT, host=db.address, clients=f"{SUBNET}.0/24",
                                  run_in=tuple(db.argv([]))).start()
        for name in CONTROLS:
            self.start_control(name)
        self.cli = self.cli_of(CONTROLS[0])
        tokens = {}
        for role, names in (("router", ROUTERS), ("dynomgr", VMS)):
            for name in names:
                extra = ("--vm-id", name) if role == "dynomgr" else ()
                tokens[name] = self.work / f"{name}.token"
                tokens[name].write_text(self.cli.ok("tokens:create", "--role", role, *extra))
                tokens[name].chmod(0o600)
        for index, name in enumerate(ROUTERS):
            host = self.net[name]
            router = ProcessLines(host.argv(dynomesh_argv(
                "router", "--listen", f"{host.address}:{HTTP_PORT}",
                "--admin", f"{host.address}:{ADMIN_PORT}",
                "--control", self.urls_from(CONTROLS[index % 2]),
                "--token-file", str(tokens[name]))), dynomesh_env(), name=name)
            router.wait_for(r"^dynomesh router: ready on ")
            self.routers[name] = router
        for index, name in enumerate(VMS):
            host = self.net[name]
            data_dir = self.work / name
            argv = host.argv(dynomesh_argv(
                "dynomgr", "--control", self.urls_from(CONTROLS[index % 2]),
                "--token-file", str(tokens[name]), "--address", host.address,
                "--admin", f"{host.address}:{ADMIN_PORT}", "--data-dir", str(data_dir),
                "--capacity-mb", "16384", "--heartbeat-interval", str(self.timings.heartbeat),
                "--stop-timeout", str(self.timings.stop_timeout), "--keep-dynos"))
            self.vms[name] = Vm(host, argv, data_dir)
        return self

    def start_control(self, name: str) -> ProcessLines:
        host, t = self.net[name], self.timings
        control = ProcessLines(host.argv(dynomesh_argv(
            "control", "--listen", f"{host.address}:{API_PORT}", "--database-url", self.pg.url,
            "--home", str(self.home), "--router-port", str(HTTP_PORT),
            "--agent-timeout", str(t.agent_timeout), "--startup-grace", str(t.startup_grace),
            "--feed-heartbeat", str(t.feed_heartbeat), "--take-out-grace", str(t.take_out_grace))),
            dynomesh_env(), name=name)
        ready = control.wait_for(r"^dynomesh control: listening on .*, node (\S+),")
        self.controls[name] = control
        self.nodes[ready.group(1)] = name
        return control

    def stop(self) -> None:
        """Routers and agents (SIGINT: an agent stops its dynos even under --keep-dynos), then
        the control nodes and PostgreSQL; what does not end in time is killed."""
        for group in ([*self.routers.values(), *(vm.agent for vm in self.vms.values())],
                      list(self.controls.values())):
            for part in group:
                part.send(signal.SIGINT)
            for part in group:
                try:
                    part.proc.wait(20)
                except subprocess.TimeoutExpired:
                    part.proc.kill()
                    part.proc.wait()
        if self.pg is not None:
            self.pg.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    # --- reading the platform ----------------------------------------------------------------

    def cli_of(self, control: str) -> Cli:
        return Cli(self.home, DYNOMESH_API=self.control_url(control))

    def api_of(self, control: str) -> Api:
        return Api(self.home, url=self.control_url(control))

    def router_clients(self) -> list[RouterClient]:
        return [RouterClient(HTTP_PORT, address=self.net[n].address) for n in ROUTERS]

    def leader(self, via: str) -> str | None:
        """The host of the control node that schedules, as `via` sees it."""
        try:
            status = self.api_of(via).get("/status")
        except (OSError, urllib.error.URLError):
            return None  # not answering: the caller polls again
        return self.nodes.get(status["scheduler"]["node"] or "")

    def router_quarantined(self, name: str) -> int:
        """How many dynos router `name` skips after a failed connect (its /metrics)."""
        url = f"http://{self.net[name].address}:{ADMIN_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return int(float(re.search(r"^dynomesh_router_quarantined_dynos (\S+)$", text,
                                   re.M).group(1)))

    def router_revision(self, name: str) -> int:
        """The revision of the routing table `name` routes on (its /readyz)."""
        url = f"http://{self.net[name].address}:{ADMIN_PORT}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        except (OSError, urllib.error.URLError):
            return -1
        match = re.search(r"revision (\d+)", text)
        return int(match.group(1)) if match else -1


def web_spread(dynos: list[dict], count: int, vms: tuple[str, ...]) -> bool:
    """`count` web dynos up and serving, each on one of `vms`, every VM of `vms` with one."""
    web = [d for d in dynos if d["type"] == "web"]
    return (len(web) == count and all(d["state"] == "up" and d["serving"]
                                      and d["taking_out"] is None and d["vm"] in vms for d in web)
            and {d["vm"] for d in web} == set(vms))


@contextlib.contextmanager
def running_platform(network: Network, timings: Timings = Timings()) -> Iterator[MultiHost]:
    """The network built, the calling thread in its `client` host and the platform started;
    all of it undone at the end, whatever happened."""
    network.create()
    try:
        with network["client"].entered():
            platform = MultiHost(network, timings)
            try:
                yield platform.start()
            finally:
                platform.stop()
    finally:
        network.destroy()


class Tripwire:
    """Listeners on a dead VM's dyno addresses (its host still exists, its processes do not):
    a router that still sends there connects, and is counted, instead of being refused."""

    def __init__(self, host: Host, addresses: list[str]) -> None:
        self.connections: list[str] = []
        self._sockets: list[socket.socket] = []
        with host.entered():
            for address in addresses:
                ip_address, port = address.rsplit(":", 1)
                sock = socket.create_server((ip_address, int(port)))
                sock.setblocking(False)
                self._sockets.append(sock)
        self._selector = selectors.DefaultSelector()
        for sock in self._sockets:
            self._selector.register(sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():  # bounded by close(): each round waits at most 0.1 s
            for key, _ in self._selector.select(timeout=0.1):
                with contextlib.suppress(BlockingIOError):
                    connection, peer = key.fileobj.accept()
                    self.connections.append(f"{peer[0]} -> {key.fileobj.getsockname()}")
                    connection.close()

    def close(self) -> list[str]:
        """Stop listening; the connections that came."""
        self._stop.set()
        self._thread.join(5)
        for sock in self._sockets:
            sock.close()
        self._selector.close()
        return self.connections
