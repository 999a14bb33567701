"""tokens, tokens:create, tokens:revoke, auth:whoami."""

from __future__ import annotations

import sys

from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, no_arguments, runs

tokens_list = command("tokens", "list API tokens (never their secrets)",
                      example="dynomesh tokens", app=False, json=True)(no_arguments)


@runs(tokens_list)
async def _(args, session):
    listed = await session.api.get("/tokens")
    if args.json:
        return emit_json(listed)
    table(["ID", "ROLE", "VM", "DESCRIPTION", "CREATED"],
          [[t["id"], t["role"], t["vm_id"] or "", t["description"], t["created_at"]]
           for t in listed])


@command("tokens:create", "create an API token; its secret is printed once",
         example="dynomesh tokens:create --role router --description edge-1 > router.token\n"
                 "dynomesh tokens:create --role dynomgr --vm-id vm-1", app=False, json=True)
def tokens_create(parser):
    parser.add_argument("--role", required=True, choices=["user", "router", "dynomgr"],
                        help="user: the CLI, all apps; router: the route feed; "
                             "dynomgr: one VM's dyno manager")
    parser.add_argument("--vm-id", help="the VM a dynomgr token is bound to")
    parser.add_argument("--description", default="", help="what the token is for")


@runs(tokens_create)
async def _(args, session):
    body = {"role": args.role, "description": args.description}
    if args.vm_id is not None:
        body["vm_id"] = args.vm_id
    created, _ = await session.api.call("POST", "/tokens", json_body=body)
    if args.json:
        return emit_json(created)
    print(created["token"])
    print(f"Created {created['role']} token {created['id']}. Keep the secret above safe: it is "
          "shown only this once.", file=sys.stderr)


@command("tokens:revoke", "revoke a token: it stops working at once",
         example="dynomesh tokens:revoke 7d0c2f0e-...", app=False)
def tokens_revoke(parser):
    parser.add_argument("id", help="the token's id (see `dynomesh tokens`)")


@runs(tokens_revoke)
async def _(args, session):
    revoked, _ = await session.api.call("DELETE", f"/tokens/{args.id}")
    print(f"Revoked {revoked['role']} token {revoked['id']}")


whoami = command("auth:whoami", "show which control plane and token the CLI uses",
                 example="dynomesh auth:whoami", app=False, json=True)(no_arguments)


@runs(whoami)
async def _(args, session):
    token = await session.api.get("/account")
    if args.json:
        return emit_json({"api": session.env.api, **token})
    print(f"{token['role']} token {token['id']} on {session.env.api}")
