"""config, config:get, config:set, config:unset, ps:scale."""

from __future__ import annotations

import re
import shlex

from controlplane.cli.commands.apps import app_path
from controlplane.cli.commands.deploy import settle_release_phase
from controlplane.cli.errors import CliError, Exit, usage
from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, runs

# web=3, worker=1:standard-2x, web:performance-m (Heroku's ps:scale syntax)
SCALE_ARGUMENT = re.compile(r"^(?P<type>[-\w]+)(=(?P<quantity>\d+))?(:(?P<size>[-\w]+))?$")

@command("config", "show an app's config vars",
         example="dynomesh config --app hello\ndynomesh config --shell > .env", json=True)
def config_list(parser):
    parser.add_argument("--shell", action="store_true", help="print KEY='value' lines")


@runs(config_list)
async def _(args, session):
    name = session.app()
    config = await session.api.get(app_path(name) + "/config-vars")
    if args.json:
        return emit_json(config)
    if args.shell:
        for key, value in config.items():
            print(f"{key}={shlex.quote(value)}")
        return
    if not config:
        print(f"{name} has no config vars: `dynomesh config:set KEY=value` adds one")
        return
    width = max(len(key) for key in config) + 1
    for key, value in config.items():
        print(f"{key + ':':<{width}} {value}")


@command("config:get", "print one config var's value",
         example="dynomesh config:get GREETING --app hello")
def config_get(parser):
    parser.add_argument("key")


@runs(config_get)
async def _(args, session):
    name = session.app()
    config = await session.api.get(app_path(name) + "/config-vars")
    if args.key not in config:
        raise CliError(Exit.NOT_FOUND, f"{name} has no config var {args.key}")
    print(config[args.key])


@command("config:set", "set config vars (a new release)",
         example="dynomesh config:set GREETING=hi 'MOTTO=hello world' --app hello", json=True)
def config_set(parser):
    parser.add_argument("pairs", nargs="+", metavar="KEY=VALUE")


async def _patch_config(session, changes: dict, verb: str, json_output: bool):
    name = session.app()
    config, headers = await session.api.call("PATCH", app_path(name) + "/config-vars",
                                             json_body=changes)
    if json_output:
        return emit_json(config)
    version = headers.get("Dynomesh-Release")
    outcome = f"done, v{version}" if version else "no change, no new release"
    print(f"{verb} {', '.join(changes)} on {name}... {outcome}")
    if version:
        release = await session.api.get(f"{app_path(name)}/releases/{version}")
        await settle_release_phase(session, name, release, quiet=False)


@runs(config_set)
async def _(args, session):
    changes = {}
    for pair in args.pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise usage(f"{pair!r} is not KEY=VALUE (quote values with spaces: 'KEY=a b')")
        changes[key] = value
    return await _patch_config(session, changes, "Setting", args.json)


@command("config:unset", "remove config vars (a new release)",
         example="dynomesh config:unset GREETING --app hello", json=True)
def config_unset(parser):
    parser.add_argument("keys", nargs="+", metavar="KEY")


@runs(config_unset)
async def _(args, session):
    return await _patch_config(session, {key: None for key in args.keys}, "Unsetting", args.json)


@command("ps:scale", "set how many dynos of each process type run, and their size",
         example="dynomesh ps:scale web=3 worker=1 --app hello\n"
                 "dynomesh ps:scale web=2:standard-2x --app hello\n"
                 "dynomesh ps:scale --app hello      # show the formation", json=True)
def ps_scale(parser):
    parser.add_argument("changes", nargs="*", metavar="TYPE=N[:SIZE]")


@runs(ps_scale)
async def _(args, session):
    name = session.app()
    updates = []
    for change in args.changes:
        match = SCALE_ARGUMENT.match(change)
        if not match or (match["quantity"] is None and match["size"] is None):
            raise usage(f"{change!r} is not TYPE=N[:SIZE] (e.g. web=3 or worker=1:standard-2x)")
        update = {"type": match["type"]}
        if match["quantity"] is not None:
            update["quantity"] = int(match["quantity"])
        if match["size"] is not None:
            update["size"] = match["size"]
        updates.append(update)
    if updates:
        formation, _ = await session.api.call("PATCH", app_path(name) + "/formation",
                                              json_body={"updates": updates})
    else:
        formation = await session.api.get(app_path(name) + "/formation")
    if args.json:
        return emit_json(formation)
    if not formation:
        print(f"{name} has no process types yet: deploy a Procfile first (`dynomesh deploy`)")
        return
    if updates:
        now = ", ".join(f"{f['type']} at {f['quantity']}:{f['size']}" for f in formation)
        print(f"Scaled {name}: now {now}")
    else:
        table(["TYPE", "QUANTITY", "SIZE", "COMMAND"],
              [[f["type"], f["quantity"], f["size"], f["command"]] for f in formation])

