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
  # follow the control plane's route feed (the usual way; token: dynomesh tokens:create --role router)
  dynomesh router --control http://10.0.0.2:5050,http://10.0.0.3:5050 --token-file router.token

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
    parser.add_argument("--control", metavar="URL[,URL]",
                        help="follow the route feed of these control planes (tried in turn); "
                             "the table survives their absence")
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="file holding the router token for --control")
    parser.add_argument("--routes", type=Path, metavar="FILE",
                        help="static routing table (JSON, see docs/routes-format.md), instead "
                             "of --control")
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


def feed_config_from_args(args: argparse.Namespace):
    """--control and --token-file -> a RouteFeedConfig, or None with --routes."""
    if (args.control is None) == (args.routes is None):
        raise ConfigError("give either --control URL (follow the control plane) or --routes "
                          "FILE (a static table)")
    if args.control is None:
        return None
    from feedclient import parse_control_urls, read_token_file
    from router.feed import RouteFeedConfig

    if args.token_file is None:
        raise ConfigError("--control needs --token-file FILE holding a router token "
                          "(dynomesh tokens:create --role router > FILE)")
    try:
        return RouteFeedConfig(parse_control_urls(args.control), read_token_file(args.token_file))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        feed = feed_config_from_args(args)
        table = RoutesFile(config.routes).load() if feed is None else None
    except ConfigError as error:
        print(f"dynomesh router: {error}", file=sys.stderr)
        return 2
    except RoutesError as error:
        print(f"dynomesh router: {config.routes}: {error}\n"
              "Fix the file and start again (format: docs/routes-format.md).", file=sys.stderr)
        return 2
    import uvloop  # the data path's event loop; imported here so --help stays fast

    try:
        return uvloop.run(_serve(config, table, feed))
    except KeyboardInterrupt:
        return 0


def _status(message: str) -> None:
    print(f"dynomesh router: {message}", file=sys.stderr, flush=True)


async def _serve(config: RouterConfig, table, feed=None) -> int:
    from router.server import Router

    router = Router(config)
    if feed is not None:
        from router.feed import RouteFeed

        router.feed = RouteFeed(router, feed, say=_status)
    else:
        router.install(table)
    try:
        await router.start()
    except OSError as error:
        print(f"dynomesh router: cannot listen: {error.strerror or error}", file=sys.stderr)
        return 1
    admin = f"; admin on http://{config.admin.host}:{router.admin_port}" if config.admin else ""
    if feed is not None:
        source = (f"following the route feed of {', '.join(feed.urls)} (every host is a 404 "
                  "until its first snapshot)")
        router.feed.start()
    else:
        source = f"with {len(table)} apps from {config.routes} (revision {table.revision})"
    print(f"dynomesh router: ready on http://{config.listen.host}:{router.port} {source}{admin}",
          file=sys.stderr, flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    if router.feed is not None:
        await router.feed.stop()
    await router.stop()
    print("dynomesh router: stopped", file=sys.stderr, flush=True)
    return 0
