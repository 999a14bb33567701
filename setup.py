"""Builds the router's compiled hot path (router/compiled.py says what and why).

Everything else about the package is in pyproject.toml, including the list of modules compiled
([tool.dynomesh] compiled). Each is compiled with Cython from its own `.py` (with the `.pxd`
declarations beside it, if any), which ships beside it as the pure-Python twin. Without Cython or a C compiler the build still succeeds, with the
twins only; the router says so when it starts.
"""

import importlib.util
import json
import os
import tomllib

from setuptools import setup

# Read by router/compiled.py: which source each compiled module was built from, so that an
# edited `.py` is imported instead of an out-of-date build.
SOURCES = "router/compiled-sources.json"


def compiled_extensions():
    with open("pyproject.toml", "rb") as file:
        modules = tomllib.load(file)["tool"]["dynomesh"]["compiled"]
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("dynomesh: Cython is not installed; the router's hot path stays pure Python")
        return []
    extensions = cythonize(
        [module.replace(".", "/") + ".py" for module in modules],
        language_level=3, quiet=True, nthreads=os.cpu_count() or 1,
        # Annotations are documentation here, never C types: the compiled module must behave
        # exactly as its twin does (an `int` annotation would otherwise refuse a bool).
        compiler_directives={"annotation_typing": False, "binding": True})
    for extension in extensions:
        extension.optional = True  # no C compiler: build the twins only, do not fail
    record_sources(modules)
    return extensions


def source_hash(path):
    """router/compiled.py's own (the `.py` and its `.pxd`), loaded by path: importing the
    `router` package here would run its start-up in the build."""
    spec = importlib.util.spec_from_file_location("_dynomesh_compiled", "router/compiled.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.source_hash(path)


def record_sources(modules):
    hashes = {}
    for module in modules:
        hashes[module] = source_hash(module.replace(".", "/") + ".py")
    with open(SOURCES, "w", encoding="utf-8") as file:
        json.dump(hashes, file, indent=1, sort_keys=True)
        file.write("\n")


# The modules compile independently: one compiler per core (the build is most of an install).
setup(ext_modules=compiled_extensions(),
      options={"build_ext": {"parallel": os.cpu_count() or 1}})
