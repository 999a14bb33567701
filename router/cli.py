"""`dynomesh router`: parse the command line, build a RouterConfig, run the router.

The table comes from the control plane's route feed (`--control`, router/feed.py) or from a
static routes file (`--routes`). Signals: SIGHUP reloads `--routes` (a file with an error keeps the current table); SIGTERM or
SIGINT drains (stop accepting, let requests in flight finish up to `--drain-timeout`) and exits
0; a second one stops at once. With `--workers N` this process supervises N worker processes
(workers.py) and passes the signals on.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from dynomesh.bytesize import ByteSizeError, parse_byte_size
from dynomesh.tasks import cancel_and_wait

from router import tableload
from router.config import ConfigError, Endpoint, Limits, RouterConfig, parse_networks
from router.routes import RoutesError
from router.source import RoutesFile

EXAMPLE = """\
example:
  # follow the control plane's route feed (the usual way; token: dynomesh tokens:create --role router)
  dynomesh router --control http://10.0.0.2:5050,http://10.0.0.3:5050 --token-file router.token

  # a static table, without the control plane:
  dynomesh router --listen 0.0.0.0:8080 --admin 127.0.0.1:8081 --routes routes.json
  curl -H 'Host: app1.localhost' http://127.0.0.1:8080/

  # HTTPS too, on 8443 (certificates from the routes' "certificates" field, by SNI):
  dynomesh router --routes routes.json --listen-tls 0.0.0.0:8443
  curl --resolve app1.example.com:8443:127.0.0.1 https://app1.example.com:8443/

  # behind a load balancer at 10.0.0.0/8 that speaks the PROXY protocol, 4 processes:
  dynomesh router --routes routes.json --workers 4 --trusted-proxies 10.0.0.0/8 \\
      --proxy-protocol

routes.json (format: docs/routes-format.md):
  {"apps": [{"name": "app1", "hosts": ["app1.localhost", "*.example.com"],
             "maintenance": false, "state": "running",
             "dynos": [{"name": "web.1", "address": "127.0.0.1:9001"}]}]}

One log line per request goes to stdout and, following a control plane, to its log stream
(`dynomesh logs`); status messages go to stderr.
Admin endpoints: /healthz, /readyz (a table is loaded), /metrics (Prometheus).
Signals: SIGHUP reloads the routes file (with --routes); SIGTERM drains in-flight requests, then exits 0.
Reference (every flag, H-code and limit): docs/router.md
"""

# (flag, RouterConfig or Limits field, help) for the numeric settings.
TIMEOUTS = [
    ("--connect-timeout", "connect_timeout", "for a dyno to accept a connection before it is "
     "quarantined and another is tried (H19)"),
    ("--request-timeout", "request_timeout", "to the first response byte once the request is "
     "sent (H12); an app's entry may set its own"),
    ("--idle-timeout", "idle_timeout", "without a byte either way once the response started, "
     "or while the client sends its body (H15 dyno, H28 client)"),
    ("--header-timeout", "header_timeout", "for a request head to arrive (408); idle "
     "keep-alive connections close silently after it"),
    ("--boot-queue-timeout", "boot_queue_timeout", "requests to a booting app wait this long "
     "for a dyno (H20)"),
    ("--quarantine-time", "quarantine_time", "a dyno that failed a connect is skipped this "
     "long"),
    ("--drain-timeout", "drain_timeout", "on SIGTERM, in-flight requests get this long to "
     "finish"),
    ("--pool-idle-timeout", "pool_idle_timeout", "pooled dyno connections idle this long are "
     "closed"),
    ("--queue-timeout", "queue_timeout", "a request waiting for a dyno with room (every dyno "
     "of its app at --max-in-flight-per-dyno) waits this long at most (then H11)"),
]
COUNTS = [
    ("--connect-attempts", "connect_attempts", "connects on distinct dynos per request "
     "before H19/H21"),
    ("--max-in-flight-per-dyno", "max_in_flight_per_dyno", "requests in flight per web dyno "
     "of an app; more wait in the app's backlog, first come first served"),
    ("--queue-per-dyno", "queue_per_dyno", "requests waiting in an app's backlog per web dyno "
     "before H11 (backlog too deep)"),
    ("--pool-max-idle", "pool_max_idle", "idle connections kept per dyno at most (the pool "
     "keeps what the last --pool-window seconds' peak concurrency needs)"),
    ("--pool-window", "pool_window", "seconds of peak concurrency a dyno's idle pool covers"),
    ("--listen-backlog", "listen_backlog", "connections the kernel holds before they are accepted "
     "(capped by net.core.somaxconn); a burst beyond it waits seconds for SYN retries"),
]
LIMITS = [
    ("--max-request-line", "request_line", "request line (else 414)"),
    ("--max-header-line", "header_line", "request header line (else 400)"),
    ("--max-header-name", "header_name", "request header name (else 400)"),
    ("--max-headers", "headers", "header fields in a request or response (else 400 / H25)"),
    ("--max-response-status-line", "response_status_line", "a dyno's status line (else H25)"),
    ("--max-response-header-line", "response_header_line", "a dyno's header line (else H25)"),
    ("--max-set-cookie-line", "set_cookie_line", "a dyno's Set-Cookie line (else H25)"),
]


def build_parser() -> argparse.ArgumentParser:
    defaults = RouterConfig()
    parser = argparse.ArgumentParser(
        prog="dynomesh router",
        description="Run a router: the routing mesh's HTTP/1.1 data path. It maps each "
                    "request's Host header to an app and proxies it to one of the app's dynos.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default=str(defaults.listen), metavar="HOST:PORT",
                        help="where clients connect (default %(default)s)")
    parser.add_argument("--listen-tls", metavar="HOST:PORT",
                        help="also serve HTTPS here (e.g. 0.0.0.0:8443): each app's "
                             "certificates come from its route entry, chosen by SNI "
                             "(docs/routes-format.md); off by default")
    parser.add_argument("--tls-default-cert", type=Path, metavar="FILE",
                        help="PEM certificate chain for server names no app's certificate "
                             "covers (default: a self-signed one made at start)")
    parser.add_argument("--tls-default-key", type=Path, metavar="FILE",
                        help="the private key of --tls-default-cert (PEM)")
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
                             "of --control; SIGHUP reloads it")
    parser.add_argument("--log-ship", metavar="URL[,URL]|off",
                        help="ship each request's log line to these control planes' log "
                             "stream (`dynomesh logs`); default: the --control URLs, none "
                             "with --routes; 'off' for stdout only")
    parser.add_argument("--log-ship-buffer", type=int, default=8 * 1024 * 1024,
                        metavar="BYTES", help="log lines held while the control plane is slow "
                        "or away, before they are dropped and counted (default %(default)s)")
    parser.add_argument("--workers", type=int, default=defaults.workers, metavar="N",
                        help="processes serving the one port (SO_REUSEPORT); /metrics shows "
                             "them together (default %(default)s)")
    timeouts = parser.add_argument_group("timeouts (seconds; fractions allowed)")
    for option, name, text in TIMEOUTS:
        timeouts.add_argument(option, type=float, default=getattr(defaults, name),
                              metavar="S", help=f"{text} (default %(default)s)")
    limits = parser.add_argument_group("limits")
    for option, name, text in COUNTS:
        limits.add_argument(option, type=int, default=getattr(defaults, name), metavar="N",
                            help=f"{text} (default %(default)s)")
    for option, name, text in LIMITS:
        limits.add_argument(option, type=int, default=getattr(defaults.limits, name),
                            dest=name, metavar="N" if name == "headers" else "BYTES",
                            help=f"{text} (default %(default)s)")
    limits.add_argument("--max-body-size", type=_byte_size, default=defaults.max_body_bytes,
                        metavar="SIZE", help="largest request body, e.g. 10MB (K, M, G: powers "
                        "of 1024); larger gets 413 (H25); 0 for no limit; an app's entry may set "
                        "its own (default: no limit)")
    edge = parser.add_argument_group("behind a load balancer")
    edge.add_argument("--trusted-proxies", default="", metavar="CIDR[,CIDR]",
                      help="peers whose X-Forwarded-Proto/-Port are kept and who are not "
                           "appended to X-Forwarded-For (e.g. 10.0.0.0/8)")
    edge.add_argument("--proxy-protocol", action="store_true",
                      help="every connection starts with a PROXY protocol v1 or v2 header")
    # Set by the --workers supervisor for each worker it starts.
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def config_from_args(args: argparse.Namespace) -> RouterConfig:
    admin = None if args.admin == "off" else Endpoint.parse(args.admin, "--admin")
    numbers = {name: getattr(args, name) for _, name, _ in TIMEOUTS + COUNTS}
    limits = Limits(**{name: getattr(args, name) for _, name, _ in LIMITS})
    listen_tls = None if args.listen_tls is None else Endpoint.parse(args.listen_tls,
                                                                     "--listen-tls")
    return RouterConfig(
        listen=Endpoint.parse(args.listen, "--listen"), admin=admin, routes=args.routes,
        listen_tls=listen_tls, tls_default_cert=args.tls_default_cert,
        tls_default_key=args.tls_default_key,
        limits=limits, trusted_proxies=parse_networks(args.trusted_proxies, "--trusted-proxies"),
        proxy_protocol=args.proxy_protocol, workers=args.workers, reuse_port=args.reuse_port,
        worker_id=args.worker_id, max_body_bytes=args.max_body_size, **numbers)


def _byte_size(text: str) -> int:
    try:
        return parse_byte_size(text)
    except ByteSizeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def name_of(config: RouterConfig) -> str:
    """How status lines name this process: `dynomesh router` or `dynomesh router[worker 2]`."""
    if config.worker_id is None:
        return "dynomesh router"
    return f"dynomesh router[worker {config.worker_id}]"


def say(config: RouterConfig, message: str) -> None:
    print(f"{name_of(config)}: {message}", file=sys.stderr, flush=True)


def feed_config_from_args(args: argparse.Namespace):
    """--control and --token-file -> a RouteFeedConfig, or None with --routes."""
    if (args.control is None) == (args.routes is None):
        raise ConfigError("give either --control URL (follow the control plane) or --routes "
                          "FILE (a static table)")
    if args.control is None:
        return None
    from dynomesh.feedclient import parse_control_urls, read_token_file
    from router.feed import RouteFeedConfig

    if args.token_file is None:
        raise ConfigError("--control needs --token-file FILE holding a router token "
                          "(dynomesh tokens:create --role router > FILE)")
    try:
        return RouteFeedConfig(parse_control_urls(args.control), read_token_file(args.token_file))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def log_ship_config_from_args(args: argparse.Namespace):
    """--log-ship (default: the --control URLs) and --token-file -> a LogShipConfig or None."""
    target = args.log_ship if args.log_ship is not None else args.control
    if target is None or target.strip() == "off":
        return None
    from dynomesh.feedclient import parse_control_urls, read_token_file
    from router.logship import LogShipConfig, ship_settings

    if args.token_file is None:
        raise ConfigError("--log-ship needs --token-file FILE holding a router token "
                          "(dynomesh tokens:create --role router > FILE)")
    try:
        settings = ship_settings(args.log_ship_buffer)
    except ValueError as error:
        raise ConfigError(f"--log-ship-buffer: {error}") from None
    try:
        return LogShipConfig(parse_control_urls(target, "--log-ship"),
                             read_token_file(args.token_file), settings)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def table_source(config: RouterConfig, table, feed) -> str:
    """Where the table comes from, for the ready line."""
    if feed is not None:
        return (f"following the route feed of {', '.join(feed.urls)} (every host is a 404 "
                "until its first snapshot)")
    return f"with {len(table)} apps from {config.routes} (revision {table.revision})"


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        feed = feed_config_from_args(args)
        ship = log_ship_config_from_args(args)
        table = RoutesFile(config.routes).load() if feed is None else None
        if table is not None:
            tableload.keep_out_of_collections()  # see router/tableload.py
    except ConfigError as error:
        print(f"dynomesh router: {error}", file=sys.stderr)
        return 2
    except RoutesError as error:
        print(f"dynomesh router: {config.routes}: {error}\n"
              "Fix the file and start again (format: docs/routes-format.md).", file=sys.stderr)
        return 2
    from dynomesh.ready import Readiness

    try:
        ready = Readiness.from_environ()
    except ValueError as error:
        print(f"dynomesh router: {error}", file=sys.stderr)
        return 2
    import uvloop  # the data path's event loop; imported here so --help stays fast

    try:
        if config.workers > 1:
            from router.workers import WorkerSupervisor

            # Each worker follows the feed (or reads the file) itself, from the same argv.
            return uvloop.run(WorkerSupervisor(config, argv, table_source(config, table, feed),
                                               ready).run())
        return uvloop.run(_serve(config, table, feed, ship, ready))
    except KeyboardInterrupt:
        return 0


async def _serve(config: RouterConfig, table, feed=None, ship=None, ready=None) -> int:
    from router.accesslog import StreamSink
    from router.compiled import hot_path
    from router.server import Router

    # Workers share stdout: each batch is written in whole lines of at most PIPE_BUF bytes,
    # so lines from different workers never interleave.
    sinks = [StreamSink(atomic=config.worker_id is not None)]
    shipper = None
    if ship is not None:
        from dynomesh.logship import LogShipper
        from router.logship import ControlLogSink

        shipper = LogShipper(ship.urls, ship.token, ship.settings,
                             say=lambda message: say(config, message))
        sinks.append(ControlLogSink(shipper))
    router = Router(config, sinks=sinks)
    router.report = lambda message: say(config, message)
    router.log_shipper = shipper
    if feed is not None:
        from router.feed import RouteFeed

        router.feed = RouteFeed(router, feed, say=lambda message: say(config, message))
    else:
        router.install(table)
    from router.certs import CertificateError

    try:
        await router.start()
    except OSError as error:
        say(config, f"cannot listen: {error.strerror or error}")
        return 1
    except CertificateError as error:
        say(config, f"cannot serve TLS: {error}")
        return 2
    admin = f"; admin on http://{config.admin.host}:{router.admin_port}" if config.admin else ""
    https = (f" and https://{config.listen_tls.host}:{router.tls_port}"
             if router.tls_port is not None else "")
    if router.feed is not None:
        router.feed.start()
    if shipper is not None:
        shipper.start()
    say(config, f"ready on http://{config.listen.host}:{router.port}{https} "
                f"{table_source(config, table, feed)}{admin}; {hot_path()}")
    if ready is not None:  # for a supervisor (`up`, the worker supervisor): see dynomesh/ready.py
        ready.announce(port=router.port, admin_port=router.admin_port if config.admin else None,
                       tls_port=router.tls_port)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    stop_now = asyncio.Event()

    def on_stop_signal() -> None:
        (stop_now if stopping.is_set() else stopping).set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop_signal)
    reloading: list[asyncio.Task] = []  # the reload under way, if any
    if feed is None:

        def on_reload_signal() -> None:
            # A newer SIGHUP wins: the file is read again from the start.
            for task in reloading:
                task.cancel()
            reloading[:] = [loop.create_task(_reload(config, router), name="routes reload")]

        loop.add_signal_handler(signal.SIGHUP, on_reload_signal)
    else:
        loop.add_signal_handler(signal.SIGHUP, say, config,
                                "SIGHUP ignored: the table follows the route feed")
    await stopping.wait()
    try:
        await cancel_and_wait(*reloading)  # the table in use stays; a half-built one is dropped
    except Exception as error:  # a reload that failed: said, and the stop goes on (flushes)
        say(config, f"a routes reload failed: {error!r}")
    if router.feed is not None:
        await router.feed.stop()
    say(config, f"draining: no new connections; in-flight requests get up to "
                f"{config.drain_timeout:g} s")
    drain = asyncio.ensure_future(router.drain())
    forced = asyncio.ensure_future(stop_now.wait())
    await asyncio.wait([drain, forced], return_when=asyncio.FIRST_COMPLETED)
    forced.cancel()  # a wait on an event: nothing to clean up
    if not drain.done() or not drain.result():
        await cancel_and_wait(drain)
        left = len(router.clients) + len(router.tunnels)
        say(config, f"drain ended with {left} connections still open; closing them")
    await router.stop()  # flushes the last lines into the sinks
    if shipper is not None:
        await shipper.aclose()
    say(config, "stopped")
    return 0


async def _reload(config: RouterConfig, router) -> None:
    """SIGHUP: read the routes file again, in slices that let requests through (a table of a
    million hosts takes seconds to build); a bad file keeps the table in use."""
    current = router.table
    try:
        table = await RoutesFile(config.routes).load_in_slices(current)
    except RoutesError as error:
        say(config, f"reload refused, keeping the current table: {config.routes}: {error}")
        return
    router.install(table, changed=())  # the swap; then the backends, in slices
    say(config, f"reloaded {len(table)} apps from {config.routes} (revision {table.revision})")
    await tableload.reconcile(router)
    if current is not None and current is not table:
        await tableload.retire(current)