"""Running the control plane: open the store, make sure the CLI can log in, serve the API.

Start-up order matters for scripts and supervisors: the ready line
`dynomesh control: listening on http://HOST:PORT ...` is printed to stdout only once the
store is migrated and the socket accepts connections.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from aiohttp import web

from controlplane import credentials
from controlplane.api import ApiContext, make_app
from controlplane.config import ControlConfig
from controlplane.slugstore import SlugStorage
from controlplane.store import Store, open_database
from controlplane.store.models import Role

log = logging.getLogger("dynomesh.control")
READY_PREFIX = "dynomesh control: listening on "


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


async def serve(config: ControlConfig, *, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set or SIGTERM/SIGINT arrives; then finish and close the store."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock = _bind(config)  # before the store opens: a taken port fails fast and changes nothing
    port = sock.getsockname()[1]
    slugs = SlugStorage(config.slug_dir)
    slugs.prepare()
    database = open_database(config.database_url, home=config.home,
                             history=config.change_history)
    store = await Store.open(database)
    runner = None
    try:
        api_url = config.api_url(port)
        await ensure_cli_credentials(config, store, api_url)
        runner = web.AppRunner(make_app(ApiContext(config, store, slugs)), access_log=None,
                               handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        print(f"{READY_PREFIX}{api_url} (store {database.describe()}, "
              f"revision {await store.revision()})", flush=True)
        await stop.wait()
        log.info("control: shutting down")
    finally:
        if runner is not None:
            await runner.cleanup()
        else:
            sock.close()
        await store.close()
