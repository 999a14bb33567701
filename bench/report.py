"""What a benchmark's JSON result starts with, and how it is written under bench/results/.

Each script measures its own thing; the stamp (which benchmark, when, on what machine) and the
writing are the same for all, so the results can be compared by the same fields.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def stamp(benchmark: str, **machine) -> dict:
    """`benchmark`, `when` (UTC) and `machine` (cores, Python, and what the caller adds, such
    as the load average at the end), the fields every result begins with."""
    return {"benchmark": benchmark, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), **machine}}


def write_result(path: Path, result: dict) -> None:
    """Write `result` as indented JSON to `path` (its folder made if missing) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
