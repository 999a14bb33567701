"""A package index on loopback for the Python build tests: the wheels of tests/app-wheels.txt,
served as a PEP 503 "simple" index, so that builds run real pip with no network.

The wheels are fetched once (`.ci/run` does it; see README, "Run the tests") into
$DYNOMESH_TEST_WHEELHOUSE, default ~/.cache/dynomesh/test-wheelhouse. Where they are missing,
the tests that build Python apps skip naming the command to run; under CI
(`DYNOMESH_CI=1`, set by .ci/run) they fail instead.
"""

from __future__ import annotations

import html
import http.server
import os
import re
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

WHEELS_FILE = REPO_ROOT / "tests" / "app-wheels.txt"
DEFAULT_WHEELHOUSE = Path("~/.cache/dynomesh/test-wheelhouse").expanduser()


def wheelhouse() -> Path:
    return Path(os.environ.get("DYNOMESH_TEST_WHEELHOUSE") or DEFAULT_WHEELHOUSE)


def pinned() -> list[str]:
    """The project names tests/app-wheels.txt pins."""
    names = []
    for line in WHEELS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(normalize(re.split(r"[=<>!~ ]", line, 1)[0]))
    return names


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def missing_reason() -> str | None:
    """Why the wheelhouse cannot serve the pinned packages, or None if it can."""
    place = wheelhouse()
    have = {normalize(p.name.split("-", 1)[0]) for p in place.glob("*.whl")}
    absent = [name for name in pinned() if name not in have]
    if not absent:
        return None
    return (f"the test wheelhouse {place} lacks {', '.join(absent)}: run `pip download "
            f"--only-binary=:all: -d {place} -r tests/app-wheels.txt` once (or set "
            "DYNOMESH_TEST_WHEELHOUSE)")


def require_wheels() -> None:
    reason = missing_reason()
    if reason is None:
        return
    if os.environ.get("DYNOMESH_CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path

    def do_GET(self) -> None:
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        if parts[:1] == ["simple"] and len(parts) == 2:
            self._project(normalize(parts[1]))
        elif parts[:1] == ["files"] and len(parts) == 2 and "/" not in parts[1]:
            self._file(self.root / parts[1])
        elif parts == ["simple"]:
            names = sorted({normalize(p.name.split("-", 1)[0]) for p in self._wheels()})
            self._page("".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in names))
        else:
            self.send_error(404)

    def _wheels(self) -> list[Path]:
        return sorted(self.root.glob("*.whl"))

    def _project(self, name: str) -> None:
        files = [p for p in self._wheels() if normalize(p.name.split("-", 1)[0]) == name]
        if not files:
            self.send_error(404)
            return
        self._page("".join(f'<a href="/files/{html.escape(p.name)}">{html.escape(p.name)}</a>\n'
                           for p in files))

    def _page(self, body: str) -> None:
        data = f"<!DOCTYPE html><html><body>\n{body}</body></html>\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _file(self, path: Path) -> None:
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass  # pip's requests are not the test's output


class WheelIndex:
    """The index on 127.0.0.1:<free port>; `url` is what `--build-pip-index-url` takes."""

    def __init__(self, root: Path) -> None:
        handler = type("Handler", (_Handler,), {"root": root})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="wheel-index")

    def __enter__(self) -> "WheelIndex":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
