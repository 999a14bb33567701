"""Make a virtualenv run from wherever it is unpacked (each dyno unpacks its slug into a fresh
directory of its own, never the build's).

pip writes each console script (`gunicorn`, `flask`, `django-admin`) with the build's absolute
interpreter path in its `#!` line, which does not exist in a dyno. Each such line becomes a
`/bin/sh` preamble that runs the `python` beside the script, wherever that is (the trick
distlib uses for paths too long for `#!`): sh runs line 2 as `exec …/python SCRIPT ARGS`,
Python reads lines 2–3 as a string literal and runs the rest. The interpreter itself is a copy
(`venv --copies`) that finds its stdlib through pyvenv.cfg's `home`, the stack's directory,
the same on every VM; `python3` and `python3.N` become relative links to it.

Stdlib only, and self-contained: the build runs it as the build user with the stack's
interpreter (`python -I -c <this file> VENV`), never as the control plane's user, so that a
file the build planted is only ever touched by the build's own user.
"""

from __future__ import annotations

import os
import sys

PREAMBLE = (b"#!/bin/sh\n"
            b"'''exec' \"$(dirname -- \"$(readlink -f -- \"$0\")\")/%s\" \"$0\" \"$@\"\n"
            b"' '''\n")


def rewrite_shebang(data: bytes, venv_bin: bytes) -> bytes | None:
    """The script with a relocatable preamble, or None if it does not start with `#!` naming
    an interpreter in `venv_bin`."""
    first, newline, rest = data.partition(b"\n")
    if not (first.startswith(b"#!") and newline):
        return None
    command = first[2:].strip()
    interpreter = command.split()[0] if command else b""
    directory, _, name = interpreter.rpartition(b"/")
    if directory != venv_bin.rstrip(b"/") or not name.startswith(b"python"):
        return None
    return PREAMBLE % name + rest


def alias_interpreters(bin_dir: str) -> None:
    """`python3` and `python3.N` as links to `python` rather than two more copies."""
    for name in sorted(os.listdir(bin_dir)):
        path = os.path.join(bin_dir, name)
        if name.startswith("python3") and not os.path.islink(path) and os.path.isfile(path):
            os.unlink(path)
            os.symlink("python", path)


def relocate(venv: str) -> int:
    bin_dir = os.path.join(venv, "bin")
    venv_bin = os.fsencode(os.path.abspath(bin_dir))
    rewritten = 0
    for name in sorted(os.listdir(bin_dir)):
        path = os.path.join(bin_dir, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as handle:
            data = handle.read()
        fixed = rewrite_shebang(data, venv_bin)
        if fixed is not None:
            with open(path, "wb") as handle:
                handle.write(fixed)
            rewritten += 1
    alias_interpreters(bin_dir)
    return rewritten


def main(argv: list[str]) -> int:
    count = relocate(argv[0])
    print(f"made {count} scripts relocatable")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
