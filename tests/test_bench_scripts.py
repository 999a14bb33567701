"""Every benchmark in bench/ still starts: its `--help` answers, and bench/README.md describes it.

The benchmarks import the code they measure and the tests' own helpers (tests/pgcluster.py,
tests/e2e/harness.py, ...) at the top of each script, and nothing else runs them: a renamed
class or a moved helper used to be found only by the next person running that bench, long
after (bench/pool_bench.py imported a `SlugStorage` that had been renamed). `--help` imports
everything a script imports at its top and parses no further, so it costs a Python start-up
each and runs no load.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

BENCH = REPO_ROOT / "bench"
HELP_TIMEOUT = 60.0  # per script; one takes well under a second


def bench_scripts() -> list[Path]:
    """The runnable scripts: bench/ also holds modules they share (bench/latency.py), which
    have no `__main__` block."""
    return [path for path in sorted(BENCH.glob("*.py"))
            if re.search(r"^if __name__ == .__main__.:", path.read_text(), re.MULTILINE)]


@pytest.mark.functional
def test_every_bench_script_answers_help(tmp_path):
    # All at once: each is a Python start-up importing aiohttp and the tests' helpers, mostly
    # waiting on the disk. Run from elsewhere, so a script that relies on the current
    # directory (rather than its own location) to find the checkout fails here too.
    scripts = bench_scripts()
    running = {path.name: subprocess.Popen([sys.executable, str(path), "--help"], cwd=tmp_path,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True)
               for path in scripts}
    broken = {}
    for name, process in running.items():
        try:
            out, err = process.communicate(timeout=HELP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            err += f"\n(no answer to --help within {HELP_TIMEOUT:g} s)"
        if process.returncode != 0 or not out.startswith(f"usage: {name}"):
            broken[name] = f"exit {process.returncode}: " + (err.strip() or out.strip())[-800:]
    assert len(scripts) > 20, "bench/ lost its scripts"
    assert not broken, "\n\n".join(f"bench/{name} --help: {why}" for name, why in broken.items())


@pytest.mark.unit
def test_every_bench_script_has_a_readme_section():
    headings = re.findall(r"^## .*$", (BENCH / "README.md").read_text(), re.MULTILINE)
    named = {script for heading in headings for script in re.findall(r"`([\w.]+\.py)`", heading)}
    missing = [path.name for path in bench_scripts() if path.name not in named]
    assert not missing, (f"bench/README.md has no section (a `## ... (`script.py`)` heading) "
                         f"for: {', '.join(missing)}")
