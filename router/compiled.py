"""The router's compiled hot path, and the switch back to its pure-Python twin.

The modules in `TWINS` do the per-request work: the head rewrites (headers.py), the log line
(accesslog.py), and the three classes of the request path, the client connection (client.py),
the exchange (exchange.py) and the dyno connection (upstream.py), with what they touch per
request: the read gate (flow.py), a dyno's pool and an app's backend (pool.py), an app's counters
(metrics.py). A build with Cython and a C compiler (setup.py) compiles each, from the very same
source file, into an extension module that sits beside its `.py`; Python's import system
prefers the extension.

The classes are declared in `.pxd` files beside their `.py` (Cython's "augmenting" declarations):
compiled, they are extension types with typed fields that cimport each other, so that the
request path reaches their fields as C struct members and calls their methods as C functions.
Compiled one at a time they were slower, not faster: compiled code reaches an untyped object's
attributes through the generic lookup, where CPython 3.11 specialises it.

Because they cimport each other, those modules are compiled or pure together: if any module in
`TWINS` must come from source, all of them do.

`DYNOMESH_PURE_PYTHON=1` in the environment makes the router import the `.py` twins instead
(a finder placed before the standard ones): for debugging, for profiling the Python, and so that
the twins are tested too. The same finder takes the `.py` of a module edited since it was
compiled. A build without a compiler has only the twins. The router's start-up line says which
it runs.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from types import ModuleType

# Kept in step with [tool.dynomesh] compiled in pyproject.toml (setup.py reads that list).
TWINS = ("router.headers", "router.accesslog", "router.flow", "router.downstream",
         "router.metrics", "router.pool", "router.exchange", "router.upstream", "router.client")
PURE_ENV = "DYNOMESH_PURE_PYTHON"


def pure_requested(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(PURE_ENV, "") not in ("", "0")


SOURCES = "compiled-sources.json"  # beside this file: {module: sha256 of the source compiled}


def source_hash(path: str) -> str:
    """The `.py` at `path` and its `.pxd` declarations, if any: what its build was made from."""
    digest = hashlib.sha256()
    for name in (path, path[:-3] + ".pxd"):
        try:
            with open(name, "rb") as file:
                digest.update(file.read())
        except FileNotFoundError:
            pass
    return digest.hexdigest()


class SourceTwinFinder(importlib.abc.MetaPathFinder):
    """Chooses the `.py` file of a module in TWINS, even where a compiled one sits beside it:
    always when the twins are requested, and when the compiled one was built from other source
    than the `.py` now there (a checkout edited since `pip install -e .`; without this the edit
    would silently not run)."""

    def __init__(self, pure: bool) -> None:
        self.pure = pure
        self.stale: list[str] = []  # modules whose compiled build is out of date
        self.unbuilt: list[str] = []  # modules without a build while others have one
        self._checked = False

    def find_spec(self, name, path, target=None):
        if name not in TWINS:
            return None
        module = name.rpartition(".")[2]
        for directory in path or ():
            source = os.path.join(directory, module + ".py")
            if not os.path.isfile(source):
                continue
            if not self.pure and not self._any_stale(directory):
                return None  # the standard finders take the compiled module
            return importlib.util.spec_from_file_location(
                name, source, loader=importlib.machinery.SourceFileLoader(name, source))
        return None

    def _any_stale(self, directory: str) -> bool:
        """Whether any module in TWINS must come from source: then all do (the compiled ones
        cimport each other's types and cannot be mixed with their twins). Checked once."""
        if not self._checked:
            self._checked = True
            built = []
            for twin in TWINS:
                module = twin.rpartition(".")[2]
                source = os.path.join(directory, module + ".py")
                if not os.path.isfile(source):
                    continue
                if self._built(directory, module):
                    built.append(twin)
                    self._stale(twin, directory, module, source)
                else:
                    self.unbuilt.append(twin)
            if not built:
                self.unbuilt = []  # nothing compiled at all: nothing to keep apart
        return bool(self.stale or self.unbuilt)

    @staticmethod
    def _built(directory: str, module: str) -> bool:
        return any(os.path.isfile(os.path.join(directory, module + suffix))
                   for suffix in importlib.machinery.EXTENSION_SUFFIXES)

    def _stale(self, name: str, directory: str, module: str, source: str) -> bool:
        try:
            with open(os.path.join(directory, SOURCES), encoding="utf-8") as file:
                recorded = json.load(file).get(name)
        except (OSError, ValueError):
            recorded = None
        if recorded == source_hash(source):
            return False
        self.stale.append(name)
        return True


def install_twin_finder(environ: Mapping[str, str] = os.environ) -> None:
    """Called as the `router` package is imported, before any module in TWINS is: always, since
    the finder also keeps an out-of-date build from shadowing an edited source."""
    if not any(isinstance(finder, SourceTwinFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, SourceTwinFinder(pure_requested(environ)))


def is_compiled(module: ModuleType) -> bool:
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def hot_path() -> str:
    """How this process runs the modules in TWINS, for the router's start-up line."""
    modules = [sys.modules.get(name) or importlib.import_module(name) for name in TWINS]
    compiled = [module.__name__ for module in modules if is_compiled(module)]
    if len(compiled) == len(modules):
        return "hot path compiled"
    if pure_requested():
        return f"hot path pure Python ({PURE_ENV} is set)"
    stale = [name for finder in sys.meta_path if isinstance(finder, SourceTwinFinder)
             for name in finder.stale]
    if stale:
        return (f"hot path pure Python: {', '.join(stale)} changed since it was compiled "
                f"(pip install -e . compiles it again)")
    unbuilt = [name for finder in sys.meta_path if isinstance(finder, SourceTwinFinder)
               for name in finder.unbuilt]
    if unbuilt:
        return (f"hot path pure Python: {', '.join(unbuilt)} did not compile, and the compiled "
                f"modules need each other (pip install -e . compiles them again)")
    if not compiled:
        return "hot path pure Python (this install was built without Cython or a C compiler)"
    return "hot path partly compiled (" + ", ".join(compiled) + ")"
