"""pool, pool:scale, vms:remove."""

from __future__ import annotations

import re
from urllib.parse import quote

from controlplane.cli.commands.ps import ago
from controlplane.cli.errors import usage
from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, no_arguments, runs

LIMIT_ARGUMENT = re.compile(r"^(?P<name>min|max)=(?P<value>\d{1,4})$")


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s ago"


def show_pool(pool: dict) -> None:
    print(f"Pool: {pool['provider']}, min {pool['min']}, max {pool['max']} "
          f"(from {pool['limits_from']})"
          + (f", {pool['vm_capacity_mb']} MB per new VM" if pool["vm_capacity_mb"] else ""))
    if pool["vms"]:
        table(["VM", "PROVIDER ID", "STATE", "ADDRESS", "DYNOS", "MEMORY", "LAST REPORT"],
              [[v["id"], v["instance_id"] or "-", v["state"], v["address"] or "-", v["dynos"],
                f"{v['used_mb']}/{v['capacity_mb']} MB", _age(v["last_report_age"])]
               for v in pool["vms"]])
    else:
        print("No VMs yet." + (" The pool launches one when a dyno needs room."
                               if pool["provider"] != "local" else
                               " Start a dyno manager (`dynomesh dynomgr --control URL "
                               "--token-file F`)."))
    if pool["waiting_dynos"]:
        print(f"\n{pool['waiting_dynos']} dyno(s) wait for room ({pool['waiting_mb']} MB)")
    for item in pool["unknown_instances"]:
        print(f"\nUnknown instance {item['instance_id']} ({item['state']}, tag dynomesh:vm="
              f"{item['vm_tag'] or '-'}): tagged for this pool but no VM knows it; left "
              "alone (terminate it, or remove its dynomesh:pool tag)")
    error = pool["last_error"]
    if error:
        print(f"\nLast {pool['provider'].upper()} error: {error['code']}: {error['message']} "
              f"({error['operation']}, {ago(error['at'])})")
    if pool["reconciled_at"]:
        print(f"Last compared with {pool['provider']}: {ago(pool['reconciled_at'])}")


pool = command("pool", "show the VM pool: its VMs, limits and last provider error",
               example="dynomesh pool\ndynomesh pool --json", app=False, json=True)(no_arguments)


@runs(pool)
async def _(args, session):
    shown = await session.api.get("/pool")
    if args.json:
        return emit_json(shown)
    show_pool(shown)


@command("pool:scale", "set how many VMs the pool keeps at least (min) and has at most (max)",
         example="dynomesh pool:scale min=1 max=20\ndynomesh pool:scale max=5",
         app=False, json=True)
def pool_scale(parser):
    parser.add_argument("limits", nargs="+", metavar="min=N|max=N")


@runs(pool_scale)
async def _(args, session):
    body = {}
    for limit in args.limits:
        match = LIMIT_ARGUMENT.match(limit)
        if not match:
            raise usage(f"{limit!r} is not min=N or max=N (e.g. `dynomesh pool:scale min=1 "
                        "max=20`)")
        body[match["name"]] = int(match["value"])
    shown, _ = await session.api.call("PATCH", "/pool", json_body=body)
    if args.json:
        return emit_json(shown)
    print(f"Pool limits set: min {shown['min']}, max {shown['max']} (the pool grows when "
          "dynos wait for room and drains VMs that stay idle)")


@command("vms:remove", "forget a VM: its dynos move elsewhere, its dynomgr tokens are revoked",
         example="dynomesh vms:remove vm-3              # a lost VM\n"
                 "dynomesh vms:remove vm-3 --force      # a live VM: its dynos restart "
                 "elsewhere", app=False, json=True)
def vms_remove(parser):
    parser.add_argument("vm", metavar="VM", help="the VM id (`dynomesh vms`)")
    parser.add_argument("--force", action="store_true",
                        help="remove a live VM that runs dynos (they restart elsewhere)")


@runs(vms_remove)
async def _(args, session):
    path = f"/vms/{quote(args.vm, safe='')}" + ("?force=true" if args.force else "")
    removed, _ = await session.api.call("DELETE", path)
    if args.json:
        return emit_json(removed)
    moved = removed["dynos_moved"]
    print(f"Removed VM {removed['id']}: {moved} dyno{'' if moved == 1 else 's'} placed "
          f"elsewhere, {removed['tokens_revoked']} dynomgr token(s) revoked"
          + ("; its instance is being terminated" if removed["terminating"] else ""))
