"""drains, drains:add, drains:remove: where an app's log stream goes besides `dynomesh logs`."""

from __future__ import annotations

from urllib.parse import quote

from controlplane.cli.commands.apps import app_path
from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, no_arguments, runs

_KINDS = ("URL is syslog+tls://HOST:PORT (RFC 5424 over TLS), syslog://HOST:PORT (over TCP) "
          "or https://[USER:PASSWORD@]HOST/PATH (batched POSTs, Heroku's logplex format)")

drains = command("drains", "list an app's log drains and how their delivery goes",
                 example="dynomesh drains --app hello\ndynomesh drains --app hello --json",
                 json=True)(no_arguments)


@runs(drains)
async def _(args, session):
    name = session.app()
    listed = await session.api.get(app_path(name) + "/drains")
    if args.json:
        return emit_json(listed)
    if not listed:
        print(f"{name} has no log drains: `dynomesh drains:add URL --app {name}` adds one")
        return
    table(["DRAIN", "URL", "SENT", "DROPPED", "RETRIES", "LAST ERROR"],
          [[d["token"], d["url"], d["delivery"]["sent"], d["delivery"]["dropped"],
            d["delivery"]["retries"], _last_error(d["delivery"])] for d in listed])


def _last_error(delivery: dict) -> str:
    if not delivery["last_error"]:
        return ""
    return f"{delivery['last_error_at']} {delivery['last_error']}"


@command("drains:add", "send every line of an app's log stream to a syslog or HTTPS receiver",
         example="dynomesh drains:add syslog+tls://logs.example.com:6514 --app hello\n"
                 "dynomesh drains:add https://user:secret@logs.example.com/heroku --app hello",
         json=True)
def drains_add(parser):
    parser.add_argument("url", help=_KINDS)


@runs(drains_add)
async def _(args, session):
    name = session.app()
    drain, _ = await session.api.call("POST", app_path(name) + "/drains",
                                      json_body={"url": args.url})
    if args.json:
        return emit_json(drain)
    print(f"Successfully added drain {drain['url']} to {name} ({drain['token']}); it gets "
          "the app's lines from now on")


@command("drains:remove", "stop sending an app's log stream to a drain",
         example="dynomesh drains:remove syslog+tls://logs.example.com:6514 --app hello\n"
                 "dynomesh drains:remove d.9173ea1f-6f14-4976-9cf0-7cd0dafdcdbc --app hello")
def drains_remove(parser):
    parser.add_argument("drain", metavar="URL_OR_TOKEN",
                        help="the drain's URL as added or as `dynomesh drains` shows it "
                             "(masked: if only one drain shows so), or its token (d.…) or id "
                             "from `dynomesh drains`")


@runs(drains_remove)
async def _(args, session):
    name = session.app()
    drain, _ = await session.api.call(
        "DELETE", f"{app_path(name)}/drains/{quote(args.drain, safe='')}")
    print(f"Successfully removed drain {drain['url']} ({drain['token']}) from {name}")
