"""The `dynomesh` command: one entry point that dispatches to each component.

This is the only module that knows all three components. Each one is imported lazily, so a
router node never loads the control plane's code paths (and vice versa): `dynomesh router`
imports `router.cli` and nothing else of ours.

Every component exposes `main(argv: list[str]) -> int`.
"""

from __future__ import annotations

import importlib
import sys

# Process commands: long-running parts of the platform. Name -> "module:function".
PROCESS_COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("onebox.cli:main", "control plane + router + dyno manager on this machine"),
    "control": ("controlplane.server_cli:main", "run the control plane (API, feeds, scheduler)"),
    "router": ("router.cli:main", "run a router (the routing mesh's HTTP data path)"),
    "dynomgr": ("dynomgr.cli:main", "run a dyno manager (the agent on each VM)"),
}

# Everything else (apps:create, deploy, ps:scale, ...) is a user command served by the CLI client.
USER_COMMANDS = "controlplane.cli:main"

USAGE = """\
usage: dynomesh COMMAND [ARGS...]

Run the platform:
{process}

Use it (talks to the control plane at $DYNOMESH_API, default http://127.0.0.1:5050):
  apps, apps:create, deploy, ps, ps:scale, ps:restart, config:set, releases, logs, ...
  dynomesh help lists them all; dynomesh help COMMAND explains one, with an example.

Quick start on one machine:
  dynomesh up
  dynomesh apps:create hello && dynomesh deploy examples/hello --app hello
  curl http://hello.localhost:8080/
"""


def _usage() -> str:
    width = max(len(name) for name in PROCESS_COMMANDS)
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in PROCESS_COMMANDS.items()]
    return USAGE.format(process="\n".join(lines))


def _process_help(name: str) -> int:
    """`dynomesh help up`: a process command's own --help (argparse exits after printing)."""
    try:
        return int(_load(PROCESS_COMMANDS[name][0])(["--help"]) or 0)
    except SystemExit as exc:
        return int(exc.code or 0)


def _help(rest: list[str]) -> int:
    """`dynomesh help [COMMAND]`: every command, the platform's processes and the user ones."""
    if rest and rest[0] in PROCESS_COMMANDS:
        return _process_help(rest[0])
    if not rest:
        width = max(len(name) for name in PROCESS_COMMANDS)
        print("Run the platform (dynomesh help COMMAND for its options):")
        for name, (_, summary) in PROCESS_COMMANDS.items():
            print(f"  {name:<{width}}  {summary}")
        print()
    return int(_load(USER_COMMANDS)(["help", *rest]) or 0)


def _load(target: str):
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "help":
        return _help(rest)
    if command in PROCESS_COMMANDS:
        entry = _load(PROCESS_COMMANDS[command][0])
        return int(entry(rest) or 0)
    entry = _load(USER_COMMANDS)
    return int(entry(args) or 0)

