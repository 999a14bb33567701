"""`dynomesh router --workers N`: N router processes on one port, supervised by this one.

Python runs one core per process, so a router node scales across cores with processes, as
nginx does with workers. Each worker is an ordinary `dynomesh router` (the same command line,
plus `--reuse-port --worker-id I`) that binds the port with SO_REUSEPORT; the kernel spreads
new connections across the workers' listening sockets. The supervisor first binds the port
itself (without listening) so that `--listen host:0` picks one port for all, and it keeps that
reservation while it runs.

The supervisor is never on the request path. It:
  * runs each worker as a `dynomesh.child.Child` (a session of its own, killed with the
    supervisor) and waits until every worker announced it is ready on its ready pipe (with its
    admin port; dynomesh/ready.py), then prints its own ready line and announces itself;
  * passes SIGHUP (reload the routes file) and SIGTERM/SIGINT (drain, then exit) on to the
    workers, and exits 0 once they have all exited;
  * restarts a worker that dies unexpectedly: at once, then backing off from 1 s to 30 s
    (`dynomesh.backoff.RestartBackoff`), at once again after 30 s of running;
  * serves the admin listener: `/metrics` asks every worker for its counters (`/snapshot` on
    the worker's own loopback admin listener) and shows their merge (metrics.py), so the node
    reports all its workers together; `/readyz` is ready when every worker is.

Workers write their log lines to the shared stdout in whole-line pieces (accesslog.py).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dynomesh.backoff import BackoffPolicy, RestartBackoff
from dynomesh.child import Child, keep_running
from dynomesh.ready import Readiness
from router.config import RouterConfig
from router.metrics import RouterCollector, merge

# A worker that dies is started again at once, then after 1, 2, 4 ... 30 s; a worker that ran
# for 30 s had a healthy run and is restarted at once again.
RESTART, RESTART_HEALTHY_AFTER = BackoffPolicy(1.0, 30.0, immediate_first=True), 30.0


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.child: Child | None = None
        self.admin_port: int | None = None
        self.ready = asyncio.Event()


class WorkerSupervisor:
    def __init__(self, config: RouterConfig, argv: list[str], source: str,
                 ready: Readiness | None = None) -> None:
        self.config = config
        self.argv = list(argv)
        self.source = source  # where the workers' table comes from, for the ready line
        self.ready = ready or Readiness()
        self.workers = [Worker(i) for i in range(1, config.workers + 1)]
        self.stopping = False
        self.port = 0
        self.tls_port: int | None = None  # with --listen-tls: the one port all workers share
        self._stopped = asyncio.Event()
        self._reservations: list[socket.socket] = []
        self._admin: web.AppRunner | None = None
        self._keepers: list[asyncio.Task] = []

    def say(self, message: str) -> None:
        print(f"dynomesh router: {message}", file=sys.stderr, flush=True)

    async def run(self) -> int:
        config = self.config
        try:
            self._reserve_port()
        except OSError as error:
            self.say(f"cannot listen: {error.strerror or error}")
            return 1
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop)
        loop.add_signal_handler(signal.SIGHUP, self._signal_workers, signal.SIGHUP)
        for worker in self.workers:
            worker.child = Child(f"worker {worker.index}", self._worker_argv(worker),
                                 on_line=_relay, capture_stdout=False)  # log lines: shared
            self._keepers.append(asyncio.create_task(self._keep_running(worker),
                                                     name=f"worker {worker.index}"))
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(worker.ready.wait() for worker in self.workers))
        except TimeoutError:
            self.say("workers did not start within 60 s; stopping")
            self._stop()
            await self._wait_workers()
            return 1
        admin = ""
        admin_port = None
        if config.admin is not None:
            admin_port = await self._start_admin()
            admin = f"; admin on http://{config.admin.host}:{admin_port}"
        https = (f" and https://{config.listen_tls.host}:{self.tls_port}"
                 if self.tls_port is not None else "")
        self.say(f"ready on http://{config.listen.host}:{self.port}{https} {self.source}, "
                 f"{len(self.workers)} workers{admin}")
        self.ready.announce(port=self.port, admin_port=admin_port, workers=len(self.workers),
                            tls_port=self.tls_port)
        await self._stopped.wait()
        await self._wait_workers()
        if self._admin is not None:
            await self._admin.cleanup()
        self.say("stopped")
        return 0

    # -- workers ----------------------------------------------------------------------------

    def _reserve_port(self) -> None:
        self.port = self._reserve(self.config.listen)
        if self.config.listen_tls is not None:
            self.tls_port = self._reserve(self.config.listen_tls)

    def _reserve(self, listen) -> int:
        family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((listen.host, listen.port))  # bound, not listening: gets no connections
        self._reservations.append(sock)
        return sock.getsockname()[1]

    def _worker_argv(self, worker: Worker) -> list[str]:
        def address(host: str, port: int) -> str:
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

        admin = "off" if self.config.admin is None else "127.0.0.1:0"
        tls = ([] if self.tls_port is None else
               ["--listen-tls", address(self.config.listen_tls.host, self.tls_port)])
        # argparse keeps the last value of a repeated option: these override the user's.
        return [sys.executable, "-m", "dynomesh", "router", *self.argv,
                "--listen", address(self.config.listen.host, self.port), *tls,
                "--admin", admin, "--workers", "1", "--reuse-port",
                "--worker-id", str(worker.index)]

    async def _keep_running(self, worker: Worker) -> None:
        """Start the worker, note when it is ready, start it again when it dies."""
        restarts = RestartBackoff(RESTART.start(), healthy_after=RESTART_HEALTHY_AFTER,
                                  clock=time.monotonic)

        def ready(facts: dict) -> None:
            worker.admin_port = facts.get("admin_port")
            worker.ready.set()

        await keep_running(worker.child, restarts, self._stopped, self.say, on_ready=ready,
                           on_exit=worker.ready.clear)

    def _signal_workers(self, signum: int) -> None:
        for worker in self.workers:
            if worker.child is not None:
                worker.child.signal(signum)

    def _stop(self) -> None:
        """SIGTERM/SIGINT: the workers drain and exit (a second signal stops them at once)."""
        if self.stopping:
            self._signal_workers(signal.SIGTERM)  # each worker: "stop now"
            return
        self.stopping = True
        self.say("draining the workers")
        self._signal_workers(signal.SIGTERM)
        self._stopped.set()

    async def _wait_workers(self) -> None:
        grace = self.config.drain_timeout + 10
        for worker in self.workers:
            if worker.child is None or worker.child.process is None:
                continue
            _, in_time = await worker.child.wait_or_kill(grace)
            if not in_time:
                self.say(f"worker {worker.index} did not stop within {grace:g} s; killed it")
        for keeper in self._keepers:
            await keeper
        for reservation in self._reservations:
            reservation.close()

    # -- the admin listener -----------------------------------------------------------------

    async def _start_admin(self) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.admin.host, self.config.admin.port)
        await site.start()
        self._admin = runner
        return runner.addresses[0][1]

    async def _ask_workers(self, path: str) -> list[tuple[Worker, int, bytes]]:
        """GET `path` from every worker's admin listener -> (worker, status, body); a worker
        that cannot answer shows as status 0."""
        timeout = aiohttp.ClientTimeout(total=5)

        async def ask(session: aiohttp.ClientSession, worker: Worker):
            if worker.admin_port is None or not worker.ready.is_set():
                return worker, 0, b""
            try:
                async with session.get(f"http://127.0.0.1:{worker.admin_port}{path}") as reply:
                    return worker, reply.status, await reply.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                self.say(f"worker {worker.index} did not answer {path}: {error!r}")
                return worker, 0, b""

        async with aiohttp.ClientSession(timeout=timeout) as session:
            return await asyncio.gather(*(ask(session, worker) for worker in self.workers))

    async def _healthz(self, request: web.Request) -> web.Response:
        alive = sum(1 for w in self.workers if w.child is not None and w.child.running)
        return web.Response(text=f"ok: {alive} of {len(self.workers)} workers running\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        answers = await self._ask_workers("/readyz")
        waiting = [str(worker.index) for worker, status, _ in answers if status != 200]
        if waiting:
            return web.Response(status=503, text=f"not ready: workers {', '.join(waiting)}\n")
        return web.Response(text=f"ready: {len(answers)} workers\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        import json

        answers = await self._ask_workers("/snapshot")
        snapshots = [(worker, json.loads(body)) for worker, status, body in answers
                     if status == 200]
        registry = CollectorRegistry(auto_describe=False)
        merged, gauges = merge([data for _, data in snapshots])
        registry.register(RouterCollector(merged, lambda: gauges))
        registry.register(_WorkerCollector(len(self.workers), snapshots))
        feeds = [data["feed"] for _, data in snapshots if "feed" in data]
        if feeds:
            from router.feed import FeedCollector, FeedFigures

            merged_feed = FeedFigures.merge([FeedFigures(**figures) for figures in feeds])
            registry.register(FeedCollector(lambda: merged_feed))
        ships = [data["log_ship"] for _, data in snapshots if "log_ship" in data]
        if ships:
            from dynomesh.logship import ShipCollector, ShipFigures

            merged_ship = ShipFigures.merge([ShipFigures(**figures) for figures in ships])
            registry.register(ShipCollector("dynomesh_router", lambda: merged_ship))
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})


class _WorkerCollector(Collector):
    """How many workers answered, and each worker's share of the requests."""

    def __init__(self, configured: int, snapshots: list[tuple[Worker, dict]]) -> None:
        self._configured = configured
        self._snapshots = snapshots

    def collect(self):
        from router.metrics import merge as merge_one

        yield GaugeMetricFamily("dynomesh_router_workers", "Worker processes configured",
                                value=self._configured)
        yield GaugeMetricFamily("dynomesh_router_workers_reporting",
                                "Worker processes that answered this scrape",
                                value=len(self._snapshots))
        requests = CounterMetricFamily("dynomesh_router_worker_requests",
                                       "Requests answered, by worker", labels=("worker",))
        for worker, data in self._snapshots:
            metrics, _ = merge_one([data])
            requests.add_metric((str(worker.index),), metrics.total_requests())
        yield requests


def _relay(line: str) -> None:
    """A worker's status line, passed on as the supervisor's own."""
    print(line, file=sys.stderr, flush=True)
