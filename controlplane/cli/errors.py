"""Exit codes the CLI promises to scripts (docs/cli.md), and the error that carries one."""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    OK = 0
    REFUSED = 1       # the control plane refused the request (invalid, conflict) or it failed
    USAGE = 2         # bad command line, no app given, a directory that cannot be deployed
    NOT_FOUND = 3     # the app, release, domain, config var or token does not exist
    AUTH = 4          # no token, a token that is not valid, or a token of the wrong role
    UNAVAILABLE = 5   # the control plane cannot be reached or failed (5xx): try again later


class CliError(Exception):
    """Stops the command: the message is printed to stderr and the process exits with `code`."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def usage(message: str) -> CliError:
    return CliError(Exit.USAGE, message)
