"""Where routing tables come from: a `--routes` file now, the control plane's feed later.

A table source only produces `RouteTable`s and hands them to `Router.install`; it never
touches the request path. The file source reads the whole document and builds a table, or
raises a `RoutesError` naming the JSON path of the problem, so a bad file never replaces a good
table.

The document is decoded one app entry at a time (router/jsonstream.py) and each entry parsed
before the next is decoded, so a file of 100 000 apps never exists as decoded JSON all at once:
that would take hundreds of megabytes at the peak and leave the allocator's arenas fragmented
(a router that loaded a 1M-host file with `json.loads` kept 514 bytes of RSS per host; the
table itself holds about 280).
"""

from __future__ import annotations

import json
from pathlib import Path

from router.jsonstream import stepwise_events
from router.routes import AppRoute, RoutesError, parse_app, parse_routes
from router.table import RouteTable, TableBuilder


class RoutesFile:
    """A static routing table in a JSON file (docs/routes-format.md)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> RouteTable:
        try:
            data = self.path.read_bytes()
        except OSError as error:
            raise RoutesError("", f"cannot read {self.path}: {error.strerror or error}") from error
        try:
            return _table_of(data)
        except RoutesError:
            raise
        except UnicodeDecodeError as error:
            raise RoutesError("", f"{self.path} is not UTF-8 text ({error.reason})") from error
        except ValueError:
            try:  # json says where, with a line and a column (only a broken file gets here)
                json.loads(data)
            except json.JSONDecodeError as error:
                raise RoutesError("", f"{self.path} is not valid JSON: {error.msg} at line "
                                      f"{error.lineno} column {error.colno}") from error
            raise

    def __str__(self) -> str:
        return str(self.path)


def _table_of(data: bytes) -> RouteTable:
    """The document's table; errors as `RouteTable.from_document(parse_routes(...))` gives
    them (the document's own shape first, then the first bad entry, then duplicates)."""
    top = None
    routes: list[AppRoute] = []
    refused: list[RoutesError] = []
    for event, key, value in stepwise_events(data):
        if event == "whole":
            top = value
        elif event == "list":
            top[key] = []  # parse_routes sees the shape; the entries come here
            if key == "apps":
                routes.clear()
                refused.clear()
        elif event == "item" and key == "apps":
            if not refused:
                try:
                    routes.append(parse_app(value, f"apps[{len(routes)}]"))
                except RoutesError as error:
                    refused.append(error)
        elif event == "value":
            top[key] = value
    document = parse_routes(top)
    if refused:
        raise refused[0]
    builder = TableBuilder(document.revision)
    for route in routes:
        builder.add(route)
    return builder.table()
