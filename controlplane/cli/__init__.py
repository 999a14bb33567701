"""The `dynomesh` user commands (apps:create, deploy, config:set, ...): a client of the REST API.

`main(argv)` gets the whole command line (`["apps:create", "hello"]`), runs one command and
returns its exit code (see `errors.Exit` and docs/cli.md).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
from dataclasses import dataclass

from controlplane.cli import commands  # noqa: F401  (registers every command)
from controlplane.cli.client import ApiClient
from controlplane.cli.context import Environment, resolve_app
from controlplane.cli.errors import CliError, Exit, usage
from controlplane.cli.registry import COMMANDS, Command


@dataclass
class Session:
    """What a running command works with."""

    args: argparse.Namespace
    env: Environment
    api: ApiClient

    def app(self, *, start=None) -> str:
        return resolve_app(getattr(self.args, "app", None), self.env, start=start)


def overview() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  {entry.summary}" for name, entry in sorted(COMMANDS.items())]
    return ("usage: dynomesh COMMAND [ARGS...]   (dynomesh help COMMAND for its options)\n\n"
            "Commands:\n" + "\n".join(lines) + "\n\n"
            "The control plane is $DYNOMESH_API (default: the one in "
            "$DYNOMESH_HOME/credentials.json);\nthe token is $DYNOMESH_TOKEN (same default). "
            "Exit codes: docs/cli.md.")


def _lookup(name: str) -> Command:
    entry = COMMANDS.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, COMMANDS, n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise usage(f"'{name}' is not a dynomesh command.{hint} `dynomesh help` lists them.")
    return entry


async def _run(entry: Command, args: argparse.Namespace) -> int:
    env = Environment.from_os()
    async with ApiClient(env.api, env.require_token()) as api:
        result = await entry.run(args, Session(args, env, api))
    return int(result or 0)


def main(argv: list[str]) -> int:
    try:
        if not argv or argv[0] in ("help", "-h", "--help"):
            if len(argv) > 1:
                _lookup(argv[1]).parser().print_help()
            else:
                print(overview())
            return Exit.OK
        entry = _lookup(argv[0])
        try:
            args = entry.parser().parse_args(argv[1:])
        except SystemExit as exc:  # argparse printed the usage or --help
            return Exit.USAGE if exc.code else Exit.OK
        return asyncio.run(_run(entry, args))
    except CliError as exc:
        print(f" !    {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(" !    interrupted", file=sys.stderr)
        return 130
