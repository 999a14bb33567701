"""run: a one-off dyno, attached to this terminal or detached (`heroku run`)."""

from __future__ import annotations

import argparse
import shlex
import sys

from controlplane import names
from controlplane.cli.attach import CallerSession, Ended, has_terminal, raw_terminal, \
    terminal_size
from controlplane.cli.commands.apps import app_path
from controlplane.cli.errors import CliError, Exit, usage
from controlplane.cli.output import emit_json
from controlplane.cli.registry import command, runs

# What the control plane allows (its default is the longest: Heroku's 24 hours).
MAX_TIMEOUT = 24 * 3600


@command("run", "run a command in a one-off dyno with the app's current code and config vars",
         example="dynomesh run bash --app hello              # a shell on a terminal\n"
                 "dynomesh run python3 manage.py migrate --app hello\n"
                 "echo 'print(6*7)' | dynomesh run python3 --app hello\n"
                 "dynomesh run --detached --timeout 600 python3 job.py --app hello\n"
                 "dynomesh run -e DEBUG=1 --size standard-2x 'echo $DEBUG' --app hello",
         json=True)
def run(parser):
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND...",
                        help="what to run, through /bin/sh on the dyno; one argument is a "
                             "shell command line as it is, several are quoted word by word")
    parser.add_argument("-d", "--detached", action="store_true",
                        help="do not attach: the output goes to the app's log as "
                             "app[run.N] (`dynomesh logs --dyno run.N`)")
    parser.add_argument("-s", "--size", metavar="SIZE",
                        help="the dyno size (default standard-1x; `dynomesh ps:scale` lists "
                             "sizes)")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
                        help="an environment variable for this dyno only, over the config "
                             "vars; repeat it, or separate several with ';'")
    parser.add_argument("--timeout", type=int, metavar="SECONDS",
                        help=f"stop the dyno after this long (default and most: {MAX_TIMEOUT} s,"
                             " Heroku's limit for one-off dynos)")
    parser.add_argument("--no-tty", action="store_true",
                        help="no terminal on the dyno even when this one has one")


def env_pairs(items: list[str]) -> dict[str, str]:
    """`-e A=1 -e 'B=2;C=3'` -> {"A": "1", "B": "2", "C": "3"} (Heroku's `--env` format)."""
    env: dict[str, str] = {}
    for item in items:
        for pair in filter(None, item.split(";")):
            key, sep, value = pair.partition("=")
            if not sep:
                raise usage(f"--env {pair!r}: expected KEY=VALUE")
            try:
                names.config_key(key.strip())
            except names.InvalidName as exc:
                raise usage(f"--env {pair!r}: {exc}") from exc
            env[key.strip()] = value
    return env


def command_line(words: list[str]) -> str:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise usage("say what to run, e.g. `dynomesh run bash --app APP`")
    return words[0] if len(words) == 1 else shlex.join(words)


def _options_after(words: list[str]) -> tuple[list[str], str | None]:
    """`--app A`/`-a A` at the end of the command (where examples put it) belongs to run."""
    if len(words) >= 3 and words[-2] in ("--app", "-a"):
        return words[:-2], words[-1]
    return words, None


@runs(run)
async def _(args, session):
    words, app = _options_after(args.command)
    if app is not None:
        args.app = app
    text = command_line(words)
    if args.json and not args.detached:
        raise usage("--json goes with --detached (it prints the dyno); an attached run's "
                    "output is the command's own")
    if args.timeout is not None and not 1 <= args.timeout <= MAX_TIMEOUT:
        raise usage(f"--timeout must be between 1 and {MAX_TIMEOUT} seconds")
    name = session.app()
    terminal = not args.detached and not args.no_tty and has_terminal()
    body = {"command": text, "attach": not args.detached, "env": env_pairs(args.env)}
    if terminal:
        body["tty"] = list(terminal_size())
    if args.size:
        body["size"] = args.size
    if args.timeout is not None:
        body["timeout"] = args.timeout
    dyno, _ = await session.api.call("POST", app_path(name) + "/dynos", json_body=body)
    if args.detached:
        if args.json:
            return emit_json(dyno)
        print(f"Running `{text}` on {name}... done, {dyno['name']} (detached)")
        print(f"`dynomesh logs --app {name} --dyno {dyno['name']} --tail` shows its output")
        return Exit.OK
    print(f"Running `{text}` on {name}... ", end="", file=sys.stderr, flush=True)
    async with session.api.websocket(dyno["attach_url"]) as ws:
        attached = await ws.receive_json()
        if attached.get("op") != "attached":
            print("failed", file=sys.stderr)
            raise CliError(Exit.REFUSED, attached.get("message") or "the session failed")
        print(f"up, {dyno['name']}", file=sys.stderr, flush=True)
        try:
            if terminal:
                with raw_terminal(0):
                    return await CallerSession(ws, terminal).run()
            return await CallerSession(ws, terminal).run()
        except Ended as exc:
            raise CliError(Exit.REFUSED, f"{dyno['name']}: {exc}") from None
