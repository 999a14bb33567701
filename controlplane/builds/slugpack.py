"""Pack a built app directory into a slug (.tar.gz of its contents) on stdout.

Stdlib only, and self-contained: the build runs it as the build user with the stack's
interpreter (`python -I -c <this file> APP_DIR LEVEL`) and streams its stdout into the slug
file, so the control plane never opens a file of the build's: a build that left a process
behind could swap a file for a link to one only root may read between a check and an open.
Links stay links (the slug rules refuse those that leave the app); members are sorted so that
the same directory makes the same archive.
"""

from __future__ import annotations

import gzip
import os
import sys
import tarfile


def pack(app_dir: str, level: int, out) -> int:
    count = 0
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0) as compressed, \
            tarfile.open(fileobj=compressed, mode="w") as archive:
        for directory, dirnames, filenames in os.walk(app_dir):
            dirnames.sort()
            relative = os.path.relpath(directory, app_dir)
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(directory, name)
                arcname = name if relative == "." else f"{relative}/{name}"
                archive.add(path, arcname=arcname, recursive=False)
                count += 1
            # os.walk does not descend into links to directories: they stay links
    return count


def main(argv: list[str]) -> int:
    pack(argv[0], int(argv[1]), sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
