"""The user commands: each one an argparse parser with an example and an async `run`.

    @command("apps:create", "create an app", example="dynomesh apps:create hello",
             app=False, json=True)
    def _(parser): parser.add_argument("name", nargs="?")
    async def run(args, session): ...

`app=True` adds `-a/--app` (falling back to the linked directory); `json=True` adds `--json`.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Runner = Callable[[argparse.Namespace, Any], Awaitable[int | None]]


@dataclass
class Command:
    name: str
    summary: str
    example: str
    app: bool
    json: bool
    configure: Callable[[argparse.ArgumentParser], None]
    run: Runner | None = None

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            prog=f"dynomesh {self.name}", description=self.summary[:1].upper() + self.summary[1:]
            + ".", epilog="example:\n" + "\n".join(f"  {line}" for line in
                                                   self.example.splitlines()),
            formatter_class=argparse.RawDescriptionHelpFormatter)
        self.configure(parser)
        if self.app:
            parser.add_argument("-a", "--app", metavar="APP",
                                help="the app (default: the app linked to this directory)")
        if self.json:
            parser.add_argument("--json", action="store_true",
                                help="print JSON for scripts instead of text")
        return parser


COMMANDS: dict[str, Command] = {}


def command(name: str, summary: str, *, example: str, app: bool = True, json: bool = False):
    """Register a command; decorate its argument set-up, then attach `run` with `.runner`."""
    def register(configure: Callable[[argparse.ArgumentParser], None]) -> Command:
        entry = Command(name, summary, example, app, json, configure)
        COMMANDS[name] = entry
        return entry
    return register


def runs(entry: Command):
    def attach(run: Runner) -> Runner:
        entry.run = run
        return run
    return attach


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands whose only options are the common ones."""
