"""Running the control plane: open the store, make sure the CLI can log in, serve the API,
the feeds and (when this node leads) the scheduler.

Start-up order matters for scripts and supervisors: the ready line
`dynomesh control: listening on http://HOST:PORT ...` is printed to stdout only once the
store is migrated, the feeds loaded and the socket accepts connections; a supervisor that
asked (dynomesh/ready.py) gets the same news on its ready pipe, with the API URL and port. App log lines
(`... hello heroku[api]: Scale to web=3 by ...`) follow on stdout.

Shutdown (SIGTERM, SIGINT): feed responses end first (followers reconnect to another node or
resume later), then in-flight requests finish, then the scheduler stops.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from aiohttp import web

from dynomesh.ready import Readiness
from controlplane import credentials
from controlplane.aio import wait_any
from controlplane.applog import StdoutAppLog
from controlplane.config import ControlConfig
from controlplane.node import ControlNode
from controlplane.slugstore import open_slug_store
from controlplane.store import Store, open_database
from controlplane.store.models import Role

log = logging.getLogger("dynomesh.control")
READY_PREFIX = "dynomesh control: listening on "
# In-flight API requests get this long to finish at shutdown (feeds end at once).
SHUTDOWN_TIMEOUT = 10.0


async def ensure_cli_credentials(config: ControlConfig, store: Store, api_url: str) -> bool:
    """Make `$home/credentials.json` hold a valid user token for this control plane.

    Returns True when a new token was created (the first start on this home, or a database
    the saved token does not belong to).
    """
    saved = credentials.load(config.home)
    if saved is not None:
        token = await store.tokens.authenticate(saved.token)
        if token is not None and token.role is Role.USER:
            if saved.api != api_url:
                credentials.save(config.home, credentials.Credentials(api_url, saved.token))
            return False
    issued = await store.tokens.create(
        Role.USER, description=f"CLI credentials in {config.home} (made by dynomesh control)")
    path = credentials.save(config.home, credentials.Credentials(api_url, issued.secret))
    log.info("control: created a user token for the CLI on this machine in %s", path)
    return True


def _bind(config: ControlConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.listen_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.listen_host, config.listen_port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(config: ControlConfig, *, stop: asyncio.Event | None = None,
                ready: Readiness | None = None) -> bool:
    """Serve until `stop` is set or SIGTERM/SIGINT arrives; then finish and close the store.

    Returns False when the node stopped because one of its tasks failed (see the log)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock = _bind(config)  # before the store opens: a taken port fails fast and changes nothing
    port = sock.getsockname()[1]
    slugs = open_slug_store(config)
    try:
        await slugs.start()
        database = open_database(config.database_url, home=config.home,
                                 history=config.change_history)
        store = await Store.open(database)
    except BaseException:
        sock.close()
        await slugs.close()
        raise
    runner = None
    node = None
    healthy = False
    applog = StdoutAppLog()
    try:
        api_url = config.api_url(port)
        await ensure_cli_credentials(config, store, api_url)
        node = ControlNode(config, store, slugs, applog=applog)
        await node.start()
        runner = web.AppRunner(node.web_app(), access_log=None, handle_signals=False,
                               shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        print(f"{READY_PREFIX}{api_url} (store {database.describe()}, "
              f"revision {await store.revision()}, node {node.node_id}, {node.role})",
              flush=True)
        if ready is not None:
            ready.announce(api=api_url, port=port, node=node.node_id)
        await wait_any((stop, node.failed), None)
        log.info("control: shutting down%s",
                 " after a failure" if node.failed.is_set() else "")
        healthy = not node.failed.is_set()
    finally:
        if node is not None:
            await node.close_feeds()
        if runner is not None:
            await runner.cleanup()
        else:
            sock.close()
        if node is not None:
            await node.stop()
        applog.close()
        await store.close()
        await slugs.close()
    return healthy
