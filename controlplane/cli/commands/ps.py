"""ps, ps:restart, ps:stop, vms."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

from controlplane.cli.commands.apps import app_path
from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, no_arguments, runs


def ago(iso: str | None, now: datetime | None = None) -> str:
    """`2026-11-26 12:00:00 (3m ago)` for an API timestamp."""
    if not iso:
        return ""
    try:
        at = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return iso
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{at:%Y-%m-%d %H:%M:%S} ({seconds // size}{unit} ago)"
    return f"{at:%Y-%m-%d %H:%M:%S} ({seconds}s ago)"


def state_text(dyno: dict) -> str:
    """The state with what is about to happen to it, and why it crashed."""
    text = dyno["state"]
    if dyno["state"] == "crashed" and (dyno["error_code"] or dyno["reason"]):
        why = ": ".join(filter(None, (dyno["error_code"], dyno["reason"])))
        text += f" ({why})"
    elif dyno["state"] == "up" and dyno.get("unhealthy"):
        text += f" (unhealthy: {dyno['unhealthy']})"  # out of the routers' tables
    if dyno["taking_out"] == "stop":
        text += ", stopping"
    elif dyno["taking_out"] == "restart":
        text += ", restarting"
    elif not dyno["serving"]:
        text += ", preboot"
    return text


@command("ps", "list an app's dynos: state, since, release, VM, address, restarts",
         example="dynomesh ps --app hello\ndynomesh ps --app hello --json", json=True)
def ps(parser):
    no_arguments(parser)


@runs(ps)
async def _(args, session):
    name = session.app()
    dynos = await session.api.get(app_path(name) + "/dynos")
    if args.json:
        return emit_json(dynos)
    if not dynos:
        print(f"{name} has no dynos: `dynomesh ps:scale web=1 --app {name}` starts one "
              "(after a deploy)")
        return
    table(["DYNO", "STATE", "SINCE", "RELEASE", "VM", "ADDRESS", "RESTARTS"],
          [[d["name"], state_text(d), ago(d["since"]), f"v{d['release']['version']}",
            d["vm"] or "-", d["address"] or "-", d["restarts"]] for d in dynos])
    for d in dynos:
        if d.get("one_off"):
            spec = d["one_off"]
            how = ("release phase" if spec["release_phase"]
                   else "attached" if spec["attached"] else "detached")
            print(f"{d['name']}: `{spec['command']}` ({how}, ends after {spec['timeout']} s)")
    unplaced = [d for d in dynos if d["state"] == "unplaced"]
    if unplaced:
        one = len(unplaced) == 1
        print(f"\n{', '.join(d['name'] for d in unplaced)}: no VM has room "
              f"({unplaced[0]['memory_mb']} MB{'' if one else ' each'}); "
              f"{'it starts' if one else 'they start'} when a VM joins or room frees up "
              "(`dynomesh vms`)")


@command("ps:restart", "restart dynos: all, one process type, or one dyno",
         example="dynomesh ps:restart --app hello          # every dyno\n"
                 "dynomesh ps:restart web --app hello      # every web dyno\n"
                 "dynomesh ps:restart web.2 --app hello", json=True)
def ps_restart(parser):
    parser.add_argument("dyno", nargs="?", metavar="DYNO|TYPE",
                        help="web.2, or a process type (default: every dyno)")


@runs(ps_restart)
async def _(args, session):
    name = session.app()
    path = app_path(name) + "/dynos"
    if args.dyno:
        path += "/" + quote(args.dyno, safe="")
    affected, _ = await session.api.call("DELETE", path)
    if args.json:
        return emit_json(affected)
    what = args.dyno or "all dynos"
    print(f"Restarting {what} on {name}... done ({len(affected)} dyno"
          f"{'' if len(affected) == 1 else 's'}; web dynos leave the routes first)")


@command("ps:stop", "stop a dyno or a process type's dynos; the formation starts replacements",
         example="dynomesh ps:stop web.2 --app hello\n"
                 "dynomesh ps:scale web=1 --app hello   # to run fewer dynos instead",
         json=True)
def ps_stop(parser):
    parser.add_argument("dyno", metavar="DYNO|TYPE", help="web.2, or a process type")


@runs(ps_stop)
async def _(args, session):
    name = session.app()
    affected, _ = await session.api.call(
        "POST", f"{app_path(name)}/dynos/{quote(args.dyno, safe='')}/actions/stop")
    if args.json:
        return emit_json(affected)
    if affected and all(d.get("one_off") for d in affected):
        print(f"Stopping {args.dyno} on {name}... done (a one-off dyno: it is not replaced)")
        return
    print(f"Stopping {args.dyno} on {name}... done (the formation still wants it, so a new "
          f"one starts; `dynomesh ps:scale` changes how many run)")


vms = command("vms", "list the VMs dyno managers registered: state, room, dynos, heartbeat",
              example="dynomesh vms\ndynomesh vms --json", app=False, json=True)(no_arguments)


@runs(vms)
async def _(args, session):
    listed = await session.api.get("/vms")
    if args.json:
        return emit_json(listed)
    status = await session.api.get("/status")
    scheduler = status["scheduler"]
    if scheduler["node"]:
        print(f"Scheduler: control node {scheduler['node']} (since {ago(scheduler['since'])})")
    if not listed:
        print("No VMs yet: start a dyno manager (`dynomesh dynomgr --control URL "
              "--token-file F`) with a token from `dynomesh tokens:create --role dynomgr "
              "--vm-id ID`")
        return
    table(["VM", "STATE", "ADDRESS", "MEMORY", "DYNOS", "LAST HEARTBEAT", "VERSION"],
          [[v["id"], v["state"], v["address"], f"{v['used_mb']}/{v['capacity_mb']} MB",
            v["dynos"], f"{v['heartbeat_age']:.0f}s ago", v["version"]] for v in listed])
