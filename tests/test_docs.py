"""The docs stay true to the tree: every module of every package is in docs/architecture.md's
tables, every module or directory those tables name still exists, every class the README and
docs/ name is still in the code, docs/cli.md shows each command with its options, and the flag
tables of router.md, dynomgr.md and cli.md name real flags with their defaults."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

PACKAGES = ("dynomesh", "router", "dynomgr", "controlplane", "onebox")
ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"


def table_rows(text: str) -> list[tuple[str | None, list[str]]]:
    """Every table row (cells as their backticked names) with the package of the `## … (`pkg/`)`
    section it is in (None outside one: the layout, the whole platform's tests)."""
    rows = []
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            named = re.search(r"\(`(\w+)/`", line)
            current = named.group(1) if named and named.group(1) in PACKAGES else None
        elif line.startswith("|") and not line.startswith("|--"):
            rows.append((current, [" ".join(re.findall(r"`([^`]+)`", cell))
                                   for cell in line.strip("|").split("|")]))
    return rows


def table_rows_by_package(text: str) -> dict[str, list[list[str]]]:
    """Each package's table rows, from the section that describes it."""
    rows: dict[str, list[list[str]]] = {package: [] for package in PACKAGES}
    for package, row in table_rows(text):
        if package:
            rows[package].append(row)
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


# A module (`store/apps.py`) or a directory as a row's subject (`feeds/`); directories named
# further on are places at run time (`run/`, `bin/`), not the tree's.
MODULE = re.compile(r"[\w.]+(/[\w.]+)*\.py")
DIRECTORY = re.compile(r"\w+(/\w+)*/")


def named_paths(row: list[str]) -> tuple[list[str], list[str]]:
    """The modules a row names anywhere, and the directories its first cell names."""
    tokens = " ".join(row).split()
    directories = [cell for cell in row[0].split() if DIRECTORY.fullmatch(cell)]
    return [token.strip(",") for token in tokens if MODULE.fullmatch(token.strip(","))], directories


def missing_paths(text: str, root: Path) -> list[str]:
    """What the tables name that the tree does not have. A name is looked for from the top of
    the tree, from its section's package, and inside the directories its row names (the `cli/`
    row's `commands/` and, within it, `apps.py`)."""
    missing = []
    for package, row in table_rows(text):
        modules, directories = named_paths(row)
        places = [root] + ([root / package] if package else [])
        for directory in directories + [token for token in " ".join(row).split()
                                        if DIRECTORY.fullmatch(token)]:
            places += [place / directory for place in places if (place / directory).is_dir()]
        for name in modules + directories:
            if not any((place / name).exists() for place in places):
                missing.append(f"{package or '(layout)'}: {name}")
    return missing


def test_every_module_the_tables_name_exists():
    assert missing_paths(ARCHITECTURE.read_text(), REPO_ROOT) == [], (
        "docs/architecture.md names a module or directory that is gone: remove or rename its row")


def test_the_check_notices_a_row_for_a_module_that_is_gone():
    text = ("## Layout\n| path | what |\n|---|---|\n| `tests/` | the tests |\n| `gone/` | no |\n"
            "## Router (`router/`)\n| module | what |\n|---|---|\n"
            "| `table.py`, `config.py` | the table |\n| `router/vanished.py` | no longer |\n"
            "## Control plane (`controlplane/`)\n|---|---|\n"
            "| `feeds/` | feeds: `routes.py` entries, `dynomesh/ready.py`, `lost.py` |\n"
            "| `cli/` | `registry.py`; `commands/` the commands: `apps.py`, `gone.py` |\n"
            "| `dynos/` | a directory that is not there |\n")
    assert missing_paths(text, REPO_ROOT) == [
        "(layout): gone/", "router: router/vanished.py", "controlplane: lost.py",
        "controlplane: gone.py", "controlplane: dynos/"]


# `FormationScheduler`, `RouteTable.apply_delta`: a class or other CamelCase name the docs quote.
CAMEL_CASE = re.compile(r"`([A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+)\b")
CODE = ("dynomesh", "router", "dynomgr", "controlplane", "onebox", "tests", "bench")


def words_of_the_code(root: Path) -> set[str]:
    """Every word of the code, tests and benchmarks, but this module's (it quotes gone names)."""
    return {word for directory in CODE for path in (root / directory).rglob("*.py")
            if path.resolve() != Path(__file__).resolve()
            for word in re.findall(r"\w+", path.read_text(encoding="utf-8"))}


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def unknown_names(text: str, words: set[str]) -> list[str]:
    """CamelCase names quoted in `text` that the code never mentions: a renamed or removed
    class. Other systems' calls count by their Python name (`HeadBucket` is aioboto3's
    `head_bucket`)."""
    return sorted({name for name in CAMEL_CASE.findall(text)
                   if name not in words and snake_case(name) not in words})


def test_every_class_the_docs_name_exists():
    words = words_of_the_code(REPO_ROOT)
    unknown = {str(path.relative_to(REPO_ROOT)): names
               for path in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
               if (names := unknown_names(path.read_text(), words))}
    assert unknown == {}, "the docs name classes the code does not have: rename or remove them"


def test_the_check_notices_a_class_that_is_gone():
    words = {"RouteTable", "apply_delta", "head_bucket"}
    text = "`RouteTable.apply_delta` and `AppLoad`, `HeadBucket` and `GoneAway(x)`; `plain` `URL`"
    assert unknown_names(text, words) == ["AppLoad", "GoneAway"]


# docs/cli.md's commands table: `name [-n N] [--json] ...` per command, or two with one row.
COMMAND_ROW = re.compile(r"\| `([a-z:]+)([^`]*)`(?:, `([a-z:]+)([^`]*)`)? \|")
EVERY_COMMAND_TAKES = {"-h", "--help", "-a", "--app"}


def options_in_the_reference(text: str) -> dict[str, set[str]]:
    rows = {}
    for line in text.splitlines():
        if row := COMMAND_ROW.match(line):
            for name, usage in (row.group(1, 2), row.group(3, 4)):
                if name:
                    rows[name] = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", usage))
    return rows


def test_the_cli_reference_shows_each_commands_options():
    import controlplane.cli.commands  # noqa: F401 (registers the commands)
    from controlplane.cli.registry import COMMANDS

    documented = options_in_the_reference((REPO_ROOT / "docs" / "cli.md").read_text())
    assert sorted(set(COMMANDS) - set(documented)) == [], "commands without a row in docs/cli.md"
    wrong = {}
    for name, shown in documented.items():
        assert name in COMMANDS, f"docs/cli.md has a row for {name}, which is no command"
        spellings = [set(action.option_strings) for action in COMMANDS[name].parser()._actions
                     if set(action.option_strings) - EVERY_COMMAND_TAKES]
        left_out = [sorted(option)[-1] for option in spellings if not option & shown]
        unknown = sorted(shown - set().union(*spellings, EVERY_COMMAND_TAKES))
        if left_out or unknown:
            wrong[name] = {"left out": left_out, "no such option": unknown}
    assert wrong == {}, "docs/cli.md's commands table and the commands' options disagree"


# The flag tables of the platform's processes: `| `--flag ARG` | default | meaning |`.
FLAG_TABLES = {"router.md": "router.cli", "dynomgr.md": "dynomgr.cli",
               "cli.md": "controlplane.server_cli"}


def flag_rows(text: str) -> list[tuple[list[str], str]]:
    """Each flag row's flags and its default cell."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| `--"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows.append((re.findall(r"`(--[a-z0-9-]+)", cells[0]), cells[1]))
    return rows


def code_default(action) -> float | None:
    """A flag's numeric default: argparse's, or, where the default is decided deeper (None
    here), the one its help states."""
    if isinstance(action.default, (int, float)) and not isinstance(action.default, bool):
        return float(action.default)
    stated = re.search(r"\(default (\d+(?:\.\d+)?)\b", action.help or "")
    return float(stated.group(1)) if stated else None


@pytest.mark.parametrize("doc", sorted(FLAG_TABLES))
def test_the_flag_tables_name_real_flags_and_their_defaults(doc):
    parser = importlib.import_module(FLAG_TABLES[doc]).build_parser()
    actions = {option: action for action in parser._actions for option in action.option_strings}
    wrong = []
    for flags, default in flag_rows((REPO_ROOT / "docs" / doc).read_text()):
        for flag in flags:
            if flag not in actions:
                wrong.append(f"{flag}: no such option")
            elif len(flags) == 1 and re.fullmatch(r"\d+(\.\d+)?", default):
                code = code_default(actions[flag])
                if code is not None and float(default) != code:
                    wrong.append(f"{flag}: documented default {default}, the code's {code}")
    assert wrong == [], f"docs/{doc}'s flag tables and `dynomesh` disagree"
