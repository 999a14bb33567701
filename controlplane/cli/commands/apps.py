"""apps, apps:create, apps:info, apps:destroy, maintenance*, domains*, features*."""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import quote

from controlplane.cli.context import link, unlink
from controlplane.cli.errors import usage
from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, no_arguments, runs
from controlplane.routersettings import settings_lines


def app_path(name: str) -> str:
    return f"/apps/{quote(name, safe='')}"


# --- apps ---

apps_list = command("apps", "list your apps", example="dynomesh apps\ndynomesh apps --json",
                    app=False, json=True)(no_arguments)


@runs(apps_list)
async def _(args, session):
    apps = await session.api.get("/apps")
    if args.json:
        return emit_json(apps)
    if not apps:
        print("You have no apps yet: `dynomesh apps:create NAME` makes one.")
        return
    table(["NAME", "WEB URL", "MAINTENANCE", "CREATED"],
          [[a["name"], a["web_url"], "on" if a["maintenance"] else "off", a["created_at"]]
           for a in apps])


@command("apps:create", "create an app and link this directory to it",
         example="dynomesh apps:create hello\ndynomesh apps:create        # a generated name",
         app=False, json=True)
def apps_create(parser):
    parser.add_argument("name", nargs="?", help="3-30 lowercase letters, digits and dashes "
                        "(default: a generated name)")
    parser.add_argument("--no-link", action="store_true",
                        help="do not link the current directory to the new app")


@runs(apps_create)
async def _(args, session):
    body = {"name": args.name} if args.name else {}
    print(f"Creating {args.name or 'an app'}...", file=sys.stderr)
    app, _ = await session.api.call("POST", "/apps", json_body=body)
    linked = None if args.no_link else link(session.env.cwd, app["name"], home=session.env.home)
    if args.json:
        return emit_json(app)
    print(f"Created {app['name']}: {app['web_url']}")
    if linked:
        print(f"Linked {session.env.cwd} to {app['name']} ({linked.relative_to(session.env.cwd)});"
              " commands run here need no --app")


@command("apps:info", "show an app: URL, release, formation, domains, features, router "
         "settings",
         example="dynomesh apps:info --app hello\ndynomesh apps:info --json", json=True)
def apps_info(parser):
    no_arguments(parser)


@runs(apps_info)
async def _(args, session):
    path = app_path(session.app())
    app = await session.api.get(path)
    releases, formation, domains, features, router = await asyncio.gather(
        session.api.get(path + "/releases?limit=1"), session.api.get(path + "/formation"),
        session.api.get(path + "/domains"), session.api.get(path + "/features"),
        session.api.get(path + "/router-settings"))
    current = next((r for r in releases if r["current"]), None)
    if args.json:
        return emit_json({"app": app, "current_release": current, "formation": formation,
                          "domains": domains, "features": features, "router_settings": router})
    release = f"v{current['version']} ({current['description']})" if current else "none yet"
    dynos = ", ".join(f"{f['type']}={f['quantity']}:{f['size']}" for f in formation) or "none"
    enabled = ", ".join(f["name"] for f in features if f["enabled"]) or "none"
    for label, value in (("Name", app["name"]), ("Web URL", app["web_url"]),
                         ("Release", release), ("Formation", dynos),
                         ("Domains", ", ".join(d["hostname"] for d in domains)),
                         ("Maintenance", "on" if app["maintenance"] else "off"),
                         ("Features", enabled), ("Router", _router_text(router)),
                         ("Created", app["created_at"])):
        print(f"{label + ':':<13}{value}")


def _router_text(settings: dict) -> str:
    """`config:router` on one line: `request timeout 120 s, max body size 10 MB, ...`."""
    return ", ".join(f"{label.lower()} {value}" for label, value in settings_lines(settings))


@command("apps:destroy", "delete an app with its releases, slugs, config, domains and add-ons",
         example="dynomesh apps:destroy --app hello --confirm hello")
def apps_destroy(parser):
    parser.add_argument("--confirm", metavar="APP", help="the app's name again, to confirm")


@runs(apps_destroy)
async def _(args, session):
    name = session.app()
    if args.confirm != name:
        raise usage(f"this deletes {name} for good (releases, slugs, config vars, domains, "
                    "add-ons and their data). "
                    f"To go ahead, run: dynomesh apps:destroy --app {name} --confirm {name}")
    await session.api.call("DELETE", app_path(name))
    unlink(session.env.cwd, name)
    print(f"Destroyed {name}")


# --- maintenance ---

maintenance = command("maintenance", "say whether maintenance mode is on",
                      example="dynomesh maintenance --app hello")(no_arguments)


@runs(maintenance)
async def _(args, session):
    app = await session.api.get(app_path(session.app()))
    print("on" if app["maintenance"] else "off")


async def _set_maintenance(session, enabled: bool) -> None:
    name = session.app()
    await session.api.call("PATCH", app_path(name), json_body={"maintenance": enabled})
    state = "on: requests get the maintenance page (H80)" if enabled else "off"
    print(f"Maintenance mode for {name} is {state}")


maintenance_on = command("maintenance:on", "serve the maintenance page instead of the app",
                         example="dynomesh maintenance:on --app hello")(no_arguments)
maintenance_off = command("maintenance:off", "serve the app again",
                          example="dynomesh maintenance:off --app hello")(no_arguments)
runs(maintenance_on)(lambda args, session: _set_maintenance(session, True))
runs(maintenance_off)(lambda args, session: _set_maintenance(session, False))


# --- domains ---

domains = command("domains", "list an app's hostnames",
                  example="dynomesh domains --app hello", json=True)(no_arguments)


@runs(domains)
async def _(args, session):
    listed = await session.api.get(app_path(session.app()) + "/domains")
    if args.json:
        return emit_json(listed)
    table(["HOSTNAME", "KIND", "ADDED"], [[d["hostname"], d["kind"], d["created_at"]]
                                         for d in listed])


@command("domains:add", "route a hostname (or *.wildcard) to an app",
         example="dynomesh domains:add www.example.test --app hello\n"
                 "dynomesh domains:add '*.example.test' --app hello", json=True)
def domains_add(parser):
    parser.add_argument("hostname")


@runs(domains_add)
async def _(args, session):
    name = session.app()
    domain, _ = await session.api.call("POST", app_path(name) + "/domains",
                                       json_body={"hostname": args.hostname})
    if args.json:
        return emit_json(domain)
    print(f"Added {domain['hostname']} to {name}; point its DNS at your routers")


@command("domains:remove", "stop routing a hostname to an app",
         example="dynomesh domains:remove www.example.test --app hello")
def domains_remove(parser):
    parser.add_argument("hostname")


@runs(domains_remove)
async def _(args, session):
    name = session.app()
    await session.api.call("DELETE", f"{app_path(name)}/domains/{quote(args.hostname, safe='')}")
    print(f"Removed {args.hostname} from {name}")


# --- features ---

features = command("features", "list an app's features and whether each is on",
                   example="dynomesh features --app hello", json=True)(no_arguments)


@runs(features)
async def _(args, session):
    listed = await session.api.get(app_path(session.app()) + "/features")
    if args.json:
        return emit_json(listed)
    table(["FEATURE", "STATE", "DESCRIPTION"],
          [[f["name"], "enabled" if f["enabled"] else "disabled", f["description"]]
           for f in listed])


async def _set_feature(args, session, enabled: bool) -> None:
    name = session.app()
    await session.api.call("PATCH", f"{app_path(name)}/features/{quote(args.feature, safe='')}",
                           json_body={"enabled": enabled})
    print(f"{'Enabled' if enabled else 'Disabled'} {args.feature} for {name}")


def _feature_argument(parser):
    parser.add_argument("feature", help="preboot or http-session-affinity (`dynomesh features` "
                                        "lists them)")


features_enable = command("features:enable", "turn a feature on (e.g. preboot)",
                          example="dynomesh features:enable preboot --app hello\n"
                                  "dynomesh features:enable http-session-affinity --app hello")(
    _feature_argument)
features_disable = command("features:disable", "turn a feature off",
                           example="dynomesh features:disable preboot --app hello")(
    _feature_argument)
runs(features_enable)(lambda args, session: _set_feature(args, session, True))
runs(features_disable)(lambda args, session: _set_feature(args, session, False))
