"""routers:keys, routers:keys:rotate: the session affinity signing keys the routers share."""

from __future__ import annotations

from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, no_arguments, runs

keys_list = command(
    "routers:keys", "list the routers' session affinity signing keys (never their secrets)",
    example="dynomesh routers:keys", app=False, json=True)(no_arguments)


@runs(keys_list)
async def _(args, session):
    listed = await session.api.get("/routers/keys")
    if args.json:
        return emit_json(listed)
    table(["ID", "USE", "CREATED"], [[k["id"], k["use"], k["created_at"]] for k in listed])


keys_rotate = command(
    "routers:keys:rotate",
    "make a new session affinity signing key; the previous one still verifies",
    example="dynomesh routers:keys:rotate\n"
            "# every router signs new cookies with the new key within moments (route feed);\n"
            "# cookies signed with the previous key are honoured and signed again on their\n"
            "# next response; the key before that is retired",
    app=False, json=True)(no_arguments)


@runs(keys_rotate)
async def _(args, session):
    rotated, _ = await session.api.call("POST", "/routers/keys/rotate")
    if args.json:
        return emit_json(rotated)
    others = [k["id"] for k in rotated["keys"] if k["id"] != rotated["signing"]["id"]]
    print(f"Routers now sign session affinity cookies with {rotated['signing']['id']}"
          + (f"; {', '.join(others)} still verifies" if others else ""))
    if rotated["retired"]:
        print(f"Retired {', '.join(rotated['retired'])}: cookies signed with it are ignored "
              "(those clients are balanced again and get a new cookie)")
