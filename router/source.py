"""Where routing tables come from: a `--routes` file now, the control plane's feed later.

A table source only produces `RouteTable`s and hands them to `Router.install`; it never
touches the request path. The file source reads the whole document and builds a table, or
raises a `RoutesError` naming the JSON path of the problem, so a bad file never replaces a good
table.
"""

from __future__ import annotations

import json
from pathlib import Path

from router.routes import RoutesError, parse_routes
from router.table import RouteTable


class RoutesFile:
    """A static routing table in a JSON file (docs/routes-format.md)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> RouteTable:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as error:
            raise RoutesError("", f"cannot read {self.path}: {error.strerror or error}") from error
        except UnicodeDecodeError as error:
            raise RoutesError("", f"{self.path} is not UTF-8 text ({error.reason})") from error
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise RoutesError("", f"{self.path} is not valid JSON: {error.msg} at line "
                                  f"{error.lineno} column {error.colno}") from error
        return RouteTable.from_document(parse_routes(document))

    def __str__(self) -> str:
        return str(self.path)
