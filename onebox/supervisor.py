"""`dynomesh up`: the control plane, one router and one dyno manager on this machine, supervised.

Start-up, in order, each step waiting for the one before to be ready:

0. PostgreSQL for add-ons (onebox/postgres.py), unless `--addons-database-url` names one or
   `--no-addons-postgres`; skipped, and said how to get one, when PostgreSQL is not installed.
   Ready when it takes the admin's login; its admin URL goes to the control plane alone, in
   its environment (not on its command line, which `ps` shows);
1. `dynomesh control` (embedded SQLite in the home) — ready when it says so; on its first
   start it writes the CLI's credentials to the home;
2. the router's and the dyno manager's tokens, created through the API with those credentials
   the first time and kept in the home (tokens.py);
3. `dynomesh router --control ...` and `dynomesh dynomgr --control ...` — ready when they say
   so, then (for up to `--ready-timeout`) when the router has its first routing table and the
   dyno manager follows its assignments;

A child says it is ready on its ready pipe (dynomesh/ready.py, `dynomesh.child.Child`), not in
prose: its human-readable ready line is for people, and it shows up here prefixed like the rest.
4. the URLs.

Each part is a process of its own (the router never shares an event loop with the control
plane), started as `dynomesh <part>`: this module imports none of them. Their output comes out
prefixed with their names. A child that dies is started again with back-off
(`dynomesh.backoff.RestartBackoff`), and said so. SIGINT (Ctrl-C) or SIGTERM stops them in order: the router first (it drains requests in
flight), then the dyno manager (it stops every dyno and reports it), then the control plane,
then PostgreSQL (SIGINT, its fast shutdown);
the exit status is 0 when all stopped in time. A second signal kills whatever is left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from dynomesh.backoff import RestartBackoff
from dynomesh.child import Child, describe_exit, keep_running
from dynomesh.ready import NotReady
from dynomesh.poll import poll_until
from dynomesh.tasks import cancel_and_wait

from onebox.config import CERTIFICATE_KEY_FILE, UpConfig, make_certificate_key
from onebox.output import PrefixedOutput
from onebox.postgres import LocalPostgres, LocalPostgresError, find_bindir
from onebox.tokens import TokenError, ensure_token, read_credentials

NAMES = ["control", "router", "dynomgr", "pg", "up"]
ADDONS_URL_ENV = "DYNOMESH_ADDONS_DATABASE_URL"  # how the control plane gets the admin URL
# Where `dynomesh` itself is importable from, for the children (a checkout or site-packages).


class StartupFailed(Exception):
    """A part could not be started; the message says which and why."""


class Stopping(Exception):
    """A stop signal came during start-up."""


class Platform:
    def __init__(self, config: UpConfig, *, python: str = sys.executable,
                 environ: dict[str, str] | None = None) -> None:
        self.config = config
        self.output = PrefixedOutput(NAMES)
        environ = dict(os.environ if environ is None else environ)
        environ["PYTHONUNBUFFERED"] = "1"
        environ["DYNOMESH_HOME"] = str(config.home)
        environ.pop(ADDONS_URL_ENV, None)  # the control plane's alone (UpConfig has it)
        self._env = environ
        self._addons_note = ""
        self._python = python
        self._stopping = asyncio.Event()
        self._children: dict[str, Child] = {}
        self._keepers: list[asyncio.Task[None]] = []
        self._signals = 0

    def say(self, text: str) -> None:
        self.output.line("up", text)

    # -- the whole run ------------------------------------------------------------------------

    async def run(self) -> int:
        await self.output.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            return await self._run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.output.aclose()

    async def _run(self) -> int:
        try:
            await self._start_all()
        except Stopping:
            self.say("stopping before start-up finished")
            return await self._stop_all()
        except StartupFailed as error:
            self.say(f"cannot start: {error}")
            await self._stop_all()
            return 1
        for child in self._children.values():
            self._keepers.append(asyncio.create_task(self._keep_running(child),
                                                     name=f"keep {child.name}"))
        await self._stopping.wait()
        return await self._stop_all()

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            self.say(f"{signal.Signals(sig).name}: stopping the router, the dyno manager (and "
                     "its dynos), then the control plane; again to kill them at once")
            self._stopping.set()
            return
        self.say("stopping now: killing what is left (the dyno manager's next start stops "
                 "dynos left behind)")
        for child in self._children.values():
            child.signal(signal.SIGKILL)

    # -- start-up -----------------------------------------------------------------------------

    async def _start_all(self) -> None:
        import aiohttp

        config = self.config
        try:
            config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as error:
            raise StartupFailed(f"home {config.home} cannot be created: {error}") from None
        self.say(f"starting dynomesh in {config.home}")
        certificate_key = config.home / CERTIFICATE_KEY_FILE
        if make_certificate_key(certificate_key):
            self.say(f"made {certificate_key}: it seals apps' certificate keys; back it up "
                     "with the home")
        api = config.api.url
        addons_url = await self._addons_server()
        control_env = dict(self._env, **({ADDONS_URL_ENV: addons_url} if addons_url else {}))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            control = await self._launch("control", [
                "control", "--listen", str(config.api), "--listen-flag=--api",
                "--home", str(config.home),
                "--base-domain", config.base_domain, "--router-port", str(config.http.port),
                "--certificate-key-file", str(certificate_key), *config.slug_store_args()],
                env=control_env)
            await self._started(control)
            try:
                cli_api, user_token = read_credentials(config.home)
                made = [role for role, path, vm in (
                    ("router", config.home / "router.token", None),
                    ("dynomgr", config.home / "dynomgr.token", config.vm_id))
                    if await ensure_token(session, api, user_token, path, role, vm)]
            except TokenError as error:
                raise StartupFailed(str(error)) from None
            if made:
                self.say(f"created {' and '.join(made)} tokens in {config.home}")
            data_dir = config.data_dir()
            https = [] if config.https is None else ["--listen-tls", str(config.https)]
            router = await self._launch("router", [
                "router", "--listen", str(config.http), "--admin", str(config.router_admin),
                "--control", api, "--token-file", str(config.home / "router.token"), *https])
            dynomgr = await self._launch("dynomgr", [
                "dynomgr", "--control", api, "--token-file", str(config.home / "dynomgr.token"),
                "--admin", str(config.dynomgr_admin), "--data-dir", str(data_dir),
                "--address", "127.0.0.1"])
            await self._started(router)
            await self._started(dynomgr)
            following = await self._following(session, router, dynomgr)
        self._print_urls(cli_api, data_dir, following)

    async def _addons_server(self) -> str | None:
        """The admin URL of the add-ons' PostgreSQL server: the one given, else a local one
        started now (when PostgreSQL is installed), else None, said with what to do."""
        config = self.config
        if config.addons_database_url:
            self._addons_note = "PostgreSQL given by --addons-database-url"
            return config.addons_database_url
        if not config.local_addons_postgres:
            self._addons_note = "off (--no-addons-postgres)"
            return None
        bindir = find_bindir()
        if bindir is None:
            self._addons_note = (
                "off: no PostgreSQL server installed. Install it (apt-get install postgresql) "
                "or give one: dynomesh up --addons-database-url "
                "postgresql://ADMIN:PASSWORD@HOST:PORT/postgres")
            return None
        local = LocalPostgres.for_this_user(bindir, config.addons_postgres_dir(),
                                            config.addons_postgres_port)
        try:
            await local.stop_leftover()
            if not local.initialized():
                self.say(f"creating a PostgreSQL cluster for add-ons in {local.root}")
                await local.initialize()
            child = await self._spawn("pg", local.server_argv(), self._env)
            if not await self._ready(child, local.accepting, 60.0):
                raise StartupFailed("PostgreSQL for add-ons did not accept logins within 60 s "
                                    "(its lines are above)")
            await local.lock_down()
        except LocalPostgresError as error:
            raise StartupFailed(f"PostgreSQL for add-ons: {error} (or start without it: "
                                "--no-addons-postgres)") from None
        self._addons_note = f"PostgreSQL {bindir.parent.name} on 127.0.0.1:{local.port} " \
                            f"(data in {local.root})"
        return local.admin_url()

    async def _launch(self, name: str, args: list[str], env: dict[str, str] | None = None
                      ) -> Child:
        """Start a `dynomesh` part (its lines come out prefixed with its name)."""
        return await self._spawn(name, [self._python, "-m", "dynomesh", *args],
                                 self._env if env is None else env)

    async def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env=env, on_line=lambda text: self.output.line(name, text))
        try:
            pid = await child.start()
        except OSError as error:
            raise StartupFailed(f"cannot run {name}: {error}") from None
        self._children[name] = child
        self.say(f"started {name} (pid {pid})")
        return child

    async def _started(self, child: Child, timeout: float = 60.0) -> dict:
        """Wait for the child to say it is ready: its own word that it listens (a port
        answering could be another process's); -> the facts it announced. Exiting first fails
        the start-up; a stop signal ends it."""
        ready = asyncio.ensure_future(child.ready())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([ready, stopping], timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not ready.done():
                ready.cancel()  # only this wait: the child's own reading goes on
        if ready.done() and not ready.cancelled():
            try:
                return ready.result()
            except NotReady as error:
                try:
                    async with asyncio.timeout(5):  # the pipe ended: its exit is due
                        code = await child.wait()
                except TimeoutError:
                    raise StartupFailed(f"{child.name} closed its ready pipe without saying it "
                                        f"was ready ({error})") from None
                raise StartupFailed(f"{child.name} exited with {describe_exit(code)} before it "
                                    "was ready (its last lines are above)") from None
        if self._stopping.is_set():
            raise Stopping()
        raise StartupFailed(f"{child.name} did not say it was ready within {timeout:g} s")

    async def _ready(self, child: Child, check: Callable[[], Awaitable[bool]],
                     timeout: float) -> bool:
        """Poll `check` (a readiness endpoint) until it passes (True) or `timeout` passes
        (False). A child that exits first fails the start-up; a stop signal ends it."""
        async def passed() -> bool:
            if self._stopping.is_set():
                raise Stopping()
            if await check():
                return True
            if not child.running:
                code = await child.wait()
                raise StartupFailed(f"{child.name} exited with {describe_exit(code)} before it "
                                    "was ready (its last lines are above)")
            return False

        return await poll_until(passed, timeout)  # a readiness endpoint: nothing announces it

    async def _following(self, session, router: Child, dynomgr: Child) -> bool:
        """Wait (up to --ready-timeout) for the router's first table and the dyno manager's
        first assignments; False when they did not come in time (the children keep trying)."""
        timeout = self.config.ready_timeout
        table = await self._ready(
            router, lambda: _answers(session, f"{self.config.router_admin.url}/readyz"), timeout)

        async def assigned() -> bool:
            health = await _json(session, f"{self.config.dynomgr_admin.url}/healthz")
            return bool(health and health.get("control", {}).get("following"))

        return table and await self._ready(dynomgr, assigned, timeout)

    def _print_urls(self, cli_api: str, data_dir: Path, following: bool) -> None:
        config = self.config
        port = "" if config.http.port == 80 else f":{config.http.port}"
        self.say("dynomesh is up:")
        self.say(f"  API            {cli_api}")
        self.say(f"  apps           http://<app>.{config.base_domain}{port}/")
        if config.https is not None:
            tls_port = "" if config.https.port == 443 else f":{config.https.port}"
            self.say(f"                 https://<app>.{config.base_domain}{tls_port}/ "
                     "(dynomesh certs:add; else a self-signed default certificate)")
        self.say(f"  router admin   {config.router_admin.url}/readyz, /metrics")
        self.say(f"  dynomgr admin  {config.dynomgr_admin.url}/healthz, /dynos, /metrics")
        self.say(f"  state          {config.home} (dynos in {data_dir})")
        self.say(f"  add-ons        {self._addons_note}")
        if not following:
            self.say("  note: the router and the dyno manager do not follow the control plane's "
                     "feeds yet; they keep trying (see their lines)")
        env = ""
        if config.home != Path.home() / ".dynomesh":
            env = f"DYNOMESH_HOME={config.home} "
        self.say(f"try: {env}dynomesh apps:create hello && {env}dynomesh deploy examples/hello "
                 "--app hello")
        self.say(f"then: {env}dynomesh logs --tail --app hello   (the router's, the dynos' and "
                 "the platform's lines)")
        self.say("Ctrl-C stops everything, dynos included.")

    # -- running ------------------------------------------------------------------------------

    async def _keep_running(self, child: Child) -> None:
        config = self.config
        restarts = RestartBackoff(config.restart.start(),
                                  healthy_after=config.restart_healthy_after, clock=time.monotonic)
        await keep_running(child, restarts, self._stopping, self.say)

    # -- stopping -----------------------------------------------------------------------------

    async def _stop_all(self) -> int:
        self._stopping.set()
        for keeper in self._keepers:
            try:
                await cancel_and_wait(keeper)
            except Exception as error:  # a bug in restarting: say it, and stop the parts anyway
                self.say(f"{keeper.get_name()} failed: {error!r}")
        clean = True
        for name in ("router", "dynomgr", "control", "pg"):
            child = self._children.get(name)
            if child is None or child.process is None:
                continue
            if child.running:
                self.say(f"stopping {name}")
            if name == "pg":  # SIGINT: PostgreSQL's fast shutdown, not waiting on sessions
                child.signal(signal.SIGINT)
                code, in_time = await child.wait_or_kill(self.config.stop_timeout)
            else:
                code, in_time = await child.stop(self.config.stop_timeout)
            if not in_time:
                self.say(f"{name} did not stop within {self.config.stop_timeout:g} s; killed it")
            self.say(f"{name} stopped ({describe_exit(code)})")
            clean = clean and in_time
        self.say("stopped" if clean else "stopped, not cleanly")
        return 0 if clean else 1


async def _answers(session, url: str) -> bool:
    """True when `url` answers 200 (connection errors and other statuses: not yet)."""
    import aiohttp

    try:
        async with session.get(url) as response:
            await response.read()
            return response.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False  # not listening yet, or busy starting: asked again shortly


async def _json(session, url: str) -> dict | None:
    import aiohttp

    try:
        async with session.get(url) as response:
            return await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
        return None  # not answering (yet), or not JSON: asked again shortly
