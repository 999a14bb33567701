"""docs/architecture.md stays true to the tree: every module of every package is in its tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

PACKAGES = ("dynomesh", "router", "dynomgr", "controlplane", "onebox")
ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"


def table_rows_by_package(text: str) -> dict[str, list[list[str]]]:
    """Each package's table rows (cells as their backticked names), from the `## … (`pkg/`)`
    section that describes it."""
    rows: dict[str, list[list[str]]] = {package: [] for package in PACKAGES}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            named = re.search(r"\(`(\w+)/`", line)
            current = named.group(1) if named and named.group(1) in rows else None
        elif current and line.startswith("|") and not line.startswith("|--"):
            rows[current].append([" ".join(re.findall(r"`([^`]+)`", cell))
                                  for cell in line.strip("|").split("|")])
    return rows


def documented(module: Path, rows: list[list[str]]) -> bool:
    """`pkg/sub/name.py` is documented by a row naming `sub/name.py` or `pkg/sub/name.py`, or
    by the row of its directory (first cell `sub/`) naming `name.py` (and any directory in
    between, `commands/`); a package's `__init__.py` by its directory's row."""
    package, *inner = module.parts
    path = "/".join(inner)
    for row in rows:
        tokens = set(re.split(r"[\s,]+", " ".join(row)))
        if {path, f"{package}/{path}"} & tokens:
            return True
        for directory in (cell for cell in row[0].split() if cell.endswith("/")):
            if not path.startswith(directory):
                continue
            *between, name = path[len(directory):].split("/")
            wanted = {f"{part}/" for part in between} | ({name} - {"__init__.py"} if between
                                                          or name != "__init__.py" else set())
            if wanted <= tokens:
                return True
    return False


def undocumented_modules() -> list[str]:
    rows = table_rows_by_package(ARCHITECTURE.read_text())
    missing = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            module = path.relative_to(REPO_ROOT)
            if module.parts[1:] == ("__init__.py",):
                continue  # the package itself: its section
            if not documented(module, rows[package]):
                missing.append(str(module))
    return missing


def test_every_module_is_in_the_architecture_tables():
    assert undocumented_modules() == [], (
        "add a row for each module to its package's table in docs/architecture.md")


def test_the_check_notices_a_module_that_is_not_described():
    rows = table_rows_by_package("## Router (`router/`)\n| module | what |\n|---|---|\n"
                                 "| `router/table.py` | the table |\n"
                                 "## Control plane (`controlplane/`)\n|---|---|\n"
                                 "| `feeds/` | feeds: `routes.py` entries |\n")
    assert documented(Path("router/table.py"), rows["router"])
    assert not documented(Path("router/phases.py"), rows["router"])
    assert documented(Path("controlplane/feeds/routes.py"), rows["controlplane"])
    assert not documented(Path("controlplane/feeds/state.py"), rows["controlplane"])
    assert documented(Path("controlplane/feeds/__init__.py"), rows["controlplane"])
