"""builds, builds:output, stack: what `deploy` built, and what the VMs offer to build on."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from controlplane.cli.commands.apps import app_path
from controlplane.cli.commands.ps import ago
from controlplane.cli.errors import CliError, Exit
from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, no_arguments, runs

# A build on another control node shows its output once it ends; how long to wait for that.
ELSEWHERE_WAIT = 20 * 60.0
ELSEWHERE_POLL = 1.0


async def print_output(api, name: str, number: int, stream: TextIO) -> None:
    """The build's output, each line as it comes while the build runs."""
    path = f"{app_path(name)}/builds/{number}/output"
    async with api.stream(path, params={}, headers={"Accept": "text/plain"},
                          read_timeout=None) as response:
        async for raw in response.content:
            stream.write(raw.decode("utf-8", errors="replace"))
            stream.flush()


async def follow_build(api, name: str, build: dict, stream: TextIO) -> dict:
    """Print a build's output as it happens; -> the build once it ended."""
    await print_output(api, name, build["number"], stream)
    path = f"{app_path(name)}/builds/{build['number']}"
    build = await api.get(path)
    waited = 0.0
    while build["status"] == "pending" and waited < ELSEWHERE_WAIT:
        # Running on another control node (its output is kept when it ends): ask again.
        await asyncio.sleep(ELSEWHERE_POLL)
        waited += ELSEWHERE_POLL
        build = await api.get(path)
        if build["status"] != "pending":
            await print_output(api, name, build["number"], stream)
    if build["status"] == "pending":
        raise CliError(Exit.UNAVAILABLE, f"build {build['number']} of {name} is still running "
                                         f"after {ELSEWHERE_WAIT / 60:g} minutes: see "
                                         f"`dynomesh builds:output {build['number']}`")
    return build


@command("builds", "list an app's builds, newest first: status, buildpack, release, reason",
         example="dynomesh builds --app hello\ndynomesh builds -n 5 --json", json=True)
def builds(parser):
    parser.add_argument("-n", "--num", type=int, default=15, metavar="N",
                        help="how many (default 15)")


@runs(builds)
async def _(args, session):
    if not 1 <= args.num <= 1000:
        raise CliError(Exit.USAGE, "--num must be between 1 and 1000")
    name = session.app()
    listed = await session.api.get(f"{app_path(name)}/builds?limit={args.num}")
    if args.json:
        return emit_json(listed)
    if not listed:
        print(f"{name} has no builds yet: `dynomesh deploy` makes the first one")
        return
    table(["BUILD", "STATUS", "BUILDPACK", "RELEASE", "STARTED", "REASON"],
          [[b["number"], b["status"], b["buildpack"] or "none",
            f"v{b['release']['version']}" if b["release"] else "", ago(b["created_at"]),
            b["reason"] or ""] for b in listed])


@command("builds:output", "show a build's output; a running build's as it happens",
         example="dynomesh builds:output 3 --app hello\n"
                 "dynomesh builds:output            # the newest build")
def builds_output(parser):
    parser.add_argument("build", nargs="?", help="the build's number (see `dynomesh builds`) "
                        "or id (default: the newest)")


@runs(builds_output)
async def _(args, session):
    name = session.app()
    ref = args.build
    if ref is None:
        newest = await session.api.get(f"{app_path(name)}/builds?limit=1")
        if not newest:
            raise CliError(Exit.NOT_FOUND, f"{name} has no builds yet")
        ref = str(newest[0]["number"])
    build = await session.api.get(f"{app_path(name)}/builds/{ref.lstrip('#')}")
    await print_output(session.api, name, build["number"], sys.stdout)


stack = command("stack", "list the interpreters each VM offers to dynos and builds",
                example="dynomesh stack\ndynomesh stack --json", app=False,
                json=True)(no_arguments)


@runs(stack)
async def _(args, session):
    listed = await session.api.get("/vms")
    if args.json:
        return emit_json([{"vm": v["id"], "state": v["state"],
                           "interpreters": v["stack"]["interpreters"]} for v in listed])
    if not listed:
        print("No VMs yet: the stack is what the dyno managers report when they register")
        return
    table(["VM", "STATE", "PYTHON", "PATH"],
          [[v["id"], v["state"], i["version"], i["path"]]
           for v in listed for i in v["stack"]["interpreters"] or [{"version": "none", "path": ""}]])
