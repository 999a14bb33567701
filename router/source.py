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

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from router import tableload
from router.jsonstream import stepwise_events
from router.routes import AppRoute, RoutesDocument, RoutesError, parse_app, parse_routes
from router.table import RouteTable


class RoutesFile:
    """A static routing table in a JSON file (docs/routes-format.md)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> RouteTable:
        """The file's table, built in one go (at start-up, before serving)."""
        data = self._read()
        with self._translated(data):
            parsed = _Parsed()
            for _ in parsed.steps(data):
                pass
            document = parsed.document()
            table = RouteTable.build(parsed.routes(), document.revision)
            table.affinity_keys = document.affinity_keys
            return table

    async def load_in_slices(self, previous: RouteTable | None = None) -> RouteTable:
        """The same table, decoded, parsed and built in slices that yield to the loop
        (router/tableload.py), for a reload while serving; entries equal to `previous`'s are
        kept as they were. Reading the file is one call (a 50 MB file: a few tens of ms)."""
        data = self._read()
        with self._translated(data), tableload.full_collections_paused():
            parsed = _Parsed()
            await tableload.run_in_slices(parsed.steps(data))
            document = parsed.document()
            table = await tableload.build(parsed.routes(), document.revision, previous)
            table.affinity_keys = document.affinity_keys
            return table

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as error:
            raise RoutesError("", f"cannot read {self.path}: {error.strerror or error}") from error

    @contextlib.contextmanager
    def _translated(self, data: bytes):
        """Errors of the JSON underneath as a `RoutesError` naming the file."""
        try:
            yield
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


class _Parsed:
    """A routes document taken in one app entry at a time (`steps`), with the errors
    `RouteTable.from_document(parse_routes(...))` gives: the document's own shape first, then
    the first bad entry, then (when the table is built) duplicates."""

    def __init__(self) -> None:
        self._top = None
        self._routes: list[AppRoute] = []
        self._refused: list[RoutesError] = []

    def steps(self, data: bytes) -> Iterator[None]:
        routes, refused = self._routes, self._refused
        for event, key, value in stepwise_events(data):
            if event == "whole":
                self._top = value
            elif event == "list":
                self._top[key] = []  # parse_routes sees the shape; the entries come here
                if key == "apps":
                    routes.clear()
                    refused.clear()
            elif event == "item" and key == "apps":
                if not refused:
                    try:
                        routes.append(parse_app(value, f"apps[{len(routes)}]"))
                    except RoutesError as error:
                        refused.append(error)
            elif event == "item":  # another list (affinity_keys): small, kept whole
                self._top[key].append(value)
            elif event == "value":
                self._top[key] = value
            yield

    def document(self) -> RoutesDocument:
        """The document without its entries; raises the first error found."""
        document = parse_routes(self._top)
        if self._refused:
            raise self._refused[0]
        return document

    def routes(self) -> list[AppRoute]:
        return self._routes
