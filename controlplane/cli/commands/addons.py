"""addons, addons:create, addons:info, addons:destroy, pg:psql."""

from __future__ import annotations

import os
import sys
from urllib.parse import quote

from dynomesh import pgbin
from controlplane.addons.urls import without_password
from controlplane.cli.commands.apps import app_path
from controlplane.cli.errors import CliError, Exit, usage
from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, no_arguments, runs


def addon_path(app: str, name: str) -> str:
    return f"{app_path(app)}/addons/{quote(name, safe='')}"


def _release_note(headers: dict) -> str:
    release = headers.get("Dynomesh-Release")
    return f", v{release}" if release else ""


# --- addons ---

addons_list = command("addons", "list an app's add-ons",
                      example="dynomesh addons --app hello\ndynomesh addons --app hello --json",
                      json=True)(no_arguments)


@runs(addons_list)
async def _(args, session):
    name = session.app()
    listed = await session.api.get(app_path(name) + "/addons")
    if args.json:
        return emit_json(listed)
    if not listed:
        print(f"{name} has no add-ons: `dynomesh addons:create postgresql --app {name}` "
              "gives it a database")
        return
    table(["NAME", "KIND", "STATE", "CONFIG VAR", "CREATED"],
          [[a["name"], a["kind"], a["state"], a["config_var"], a["created_at"]] for a in listed])
    for addon in listed:
        if addon["state"] != "ready":
            print(unfinished(addon, name), file=sys.stderr)


def unfinished(addon: dict, app: str) -> str:
    """What to run for an add-on a crash or a failure left half made or half destroyed."""
    destroy = f"`dynomesh addons:destroy {addon['name']} --app {app} --confirm {app}`"
    if addon["state"] == "deprovisioning":
        return f"{addon['name']} is being destroyed (interrupted?): finish with {destroy}"
    return (f"{addon['name']} is {addon['state']} (interrupted?): finish it with `dynomesh "
            f"addons:create {addon['kind']} --app {app}`, or remove it with {destroy}")


# --- addons:create ---

@command("addons:create", "give an app an add-on (postgresql: a database, as DATABASE_URL; "
         "a new release)",
         example="dynomesh addons:create postgresql --app hello", json=True)
def addons_create(parser):
    parser.add_argument("kind", metavar="KIND",
                        help="the add-on's kind: postgresql (Heroku's heroku-postgresql and a "
                             ":PLAN after it are accepted; there are no plans here)")


@runs(addons_create)
async def _(args, session):
    name = session.app()
    print(f"Creating {args.kind} on {name}...", file=sys.stderr)
    if ":" in args.kind:
        print(f"(dynomesh has no add-on plans: {args.kind.partition(':')[2]!r} is ignored, "
              "every add-on of a kind is the same)", file=sys.stderr)
    addon, headers = await session.api.call("POST", app_path(name) + "/addons",
                                            json_body={"kind": args.kind})
    if args.json:
        return emit_json(addon)
    print(f"Created {addon['name']} as {addon['config_var']} on {name}{_release_note(headers)}")
    print(f"`dynomesh addons:info {addon['name']} --app {name}` shows it; "
          f"`dynomesh pg:psql --app {name}` opens psql on it")


# --- addons:info ---

@command("addons:info", "show an add-on: kind, state, config var (password masked) and where "
         "it lives",
         example="dynomesh addons:info postgresql-3f9a1c --app hello", json=True)
def addons_info(parser):
    parser.add_argument("name", metavar="NAME", help="the add-on's name (`dynomesh addons`)")


@runs(addons_info)
async def _(args, session):
    addon = await session.api.get(addon_path(session.app(), args.name))
    if args.json:
        return emit_json(addon)
    value = addon["config_value_masked"]
    for label, shown in (("Name", addon["name"]), ("Kind", addon["kind"]),
                         ("App", addon["app"]["name"]), ("State", addon["state"]),
                         ("Config var", f"{addon['config_var']}={value}" if value
                          else f"{addon['config_var']} (not set)"),
                         ("Resource", addon["resource"]),
                         ("Server", addon["location"] or "not configured on this platform"),
                         ("Created", addon["created_at"])):
        print(f"{label + ':':<12}{shown}")
    if value:
        print(f"`dynomesh config:get {addon['config_var']} --app {addon['app']['name']}` "
              "prints it with its password")


# --- addons:destroy ---

@command("addons:destroy", "destroy an add-on and its data (postgresql: drops the database "
         "and its role, unsets DATABASE_URL; a new release)",
         example="dynomesh addons:destroy postgresql-3f9a1c --app hello --confirm hello")
def addons_destroy(parser):
    parser.add_argument("name", metavar="NAME", help="the add-on's name (`dynomesh addons`)")
    parser.add_argument("--confirm", metavar="APP", help="the app's name again, to confirm")


@runs(addons_destroy)
async def _(args, session):
    name = session.app()
    if args.confirm != name:
        raise usage(f"this destroys {args.name} and all its data for good. To go ahead, run: "
                    f"dynomesh addons:destroy {args.name} --app {name} --confirm {name}")
    addon, headers = await session.api.call("DELETE", addon_path(name, args.name))
    print(f"Destroyed {addon['name']} on {name}: its {addon['kind']} resource is gone and "
          f"{addon['config_var']} unset{_release_note(headers)}")


# --- pg:psql ---

@command("pg:psql", "open psql on the app's PostgreSQL add-on",
         example="dynomesh pg:psql --app hello\n"
                 "dynomesh pg:psql --app hello -c 'SELECT count(*) FROM notes'")
def pg_psql(parser):
    parser.add_argument("-c", "--command", metavar="SQL",
                        help="run this SQL and exit instead of opening a prompt")


def find_psql(path: str | None = None, pattern: str = pgbin.BIN_GLOB) -> str | None:
    """psql on PATH, else the newest one the PostgreSQL client packages installed."""
    found = pgbin.find("psql", pattern=pattern, path=path, path_first=True)
    return None if found is None else str(found)


def psql_invocation(psql: str, url: str, sql: str | None,
                    environ: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """psql's argv and environment for `url`: the password goes to psql through PGPASSWORD
    (libpq reads it), not on a command line other users of the machine can see."""
    bare, password = without_password(url)
    env = dict(environ)
    if password is not None:
        env["PGPASSWORD"] = password
    argv = [psql, bare] + (["-c", sql] if sql is not None else [])
    return argv, env


@runs(pg_psql)
async def _(args, session):
    name = session.app()
    addons = [a for a in await session.api.get(app_path(name) + "/addons")
              if a["kind"] == "postgresql"]
    if not addons:
        raise CliError(Exit.NOT_FOUND, f"{name} has no postgresql add-on: `dynomesh "
                       f"addons:create postgresql --app {name}` makes one")
    addon = addons[0]
    if addon["state"] != "ready":
        raise CliError(Exit.REFUSED, unfinished(addon, name))
    url = (await session.api.get(app_path(name) + "/config-vars")).get(addon["config_var"])
    if not url:
        raise CliError(Exit.REFUSED, f"{name} has no {addon['config_var']} although "
                       f"{addon['name']} is ready: `dynomesh addons:info {addon['name']} "
                       f"--app {name}` shows it")
    psql = find_psql()
    if psql is None:
        raise CliError(Exit.USAGE, (
            "psql is not installed: install the PostgreSQL client (Debian/Ubuntu: "
            "`apt-get install postgresql-client`), or connect any client to the URL that "
            f"`dynomesh config:get {addon['config_var']} --app {name}` prints"))
    argv, env = psql_invocation(psql, url, args.command, dict(os.environ))
    sys.stdout.flush()
    os.execve(psql, argv, env)  # psql takes over this process: the terminal is its own
