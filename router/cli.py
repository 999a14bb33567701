"""`dynomesh router`: parse the command line, build a RouterConfig, run the router."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from router.config import ConfigError, Endpoint, RouterConfig
from router.routes import RoutesError
from router.source import RoutesFile

EXAMPLE = """\
example:
  dynomesh router --listen 0.0.0.0:8080 --admin 127.0.0.1:8081 --routes routes.json
  curl -H 'Host: app1.localhost' http://127.0.0.1:8080/

routes.json (format: docs/routes-format.md):
  {"apps": [{"name": "app1", "hosts": ["app1.localhost", "*.example.com"],
             "maintenance": false, "state": "running",
             "dynos": [{"name": "web.1", "address": "127.0.0.1:9001"}]}]}

One log line per request goes to stdout; status messages go to stderr.
Admin endpoints: /healthz, /readyz (a table is loaded), /metrics (Prometheus).
"""


def build_parser() -> argparse.ArgumentParser:
    defaults = RouterConfig()
    parser = argparse.ArgumentParser(
        prog="dynomesh router",
        description="Run a router: the routing mesh's HTTP/1.1 data path. It maps each "
                    "request's Host header to an app and proxies it to one of the app's dynos.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default=str(defaults.listen), metavar="HOST:PORT",
                        help="where clients connect (default %(default)s)")
    parser.add_argument("--admin", default=str(defaults.admin), metavar="HOST:PORT",
                        help="admin listener for /healthz, /readyz, /metrics; 'off' for none "
                             "(default %(default)s)")
    parser.add_argument("--routes", type=Path, metavar="FILE", required=True,
                        help="static routing table (JSON, see docs/routes-format.md)")
    parser.add_argument("--boot-queue-timeout", type=float, default=defaults.boot_queue_timeout,
                        metavar="SECONDS", help="how long requests to a booting app wait for a "
                        "dyno before H20 (default %(default)s)")
    parser.add_argument("--connect-timeout", type=float, default=defaults.connect_timeout,
                        metavar="SECONDS", help="time for a dyno to accept a connection before "
                        "another is tried (default %(default)s)")
    parser.add_argument("--pool-idle-timeout", type=float, default=defaults.pool_idle_timeout,
                        metavar="SECONDS", help="close pooled dyno connections idle this long "
                        "(default %(default)s)")
    return parser


def config_from_args(args: argparse.Namespace) -> RouterConfig:
    admin = None if args.admin == "off" else Endpoint.parse(args.admin, "--admin")
    return RouterConfig(
        listen=Endpoint.parse(args.listen, "--listen"), admin=admin, routes=args.routes,
        boot_queue_timeout=args.boot_queue_timeout, connect_timeout=args.connect_timeout,
        pool_idle_timeout=args.pool_idle_timeout)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        table = RoutesFile(config.routes).load()
    except ConfigError as error:
        print(f"dynomesh router: {error}", file=sys.stderr)
        return 2
    except RoutesError as error:
        print(f"dynomesh router: {config.routes}: {error}\n"
              "Fix the file and start again (format: docs/routes-format.md).", file=sys.stderr)
        return 2
    import uvloop  # the data path's event loop; imported here so --help stays fast

    try:
        return uvloop.run(_serve(config, table))
    except KeyboardInterrupt:
        return 0


async def _serve(config: RouterConfig, table) -> int:
    from router.server import Router

    router = Router(config)
    router.install(table)
    try:
        await router.start()
    except OSError as error:
        print(f"dynomesh router: cannot listen: {error.strerror or error}", file=sys.stderr)
        return 1
    admin = f"; admin on http://{config.admin.host}:{router.admin_port}" if config.admin else ""
    print(f"dynomesh router: ready on http://{config.listen.host}:{router.port} with "
          f"{len(table)} apps from {config.routes} (revision {table.revision}){admin}",
          file=sys.stderr, flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await router.stop()
    print("dynomesh router: stopped", file=sys.stderr, flush=True)
    return 0
