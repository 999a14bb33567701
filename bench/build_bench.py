"""Builds: how long the Flask example (examples/flask: flask + gunicorn) takes to build, with a
cold cache and with a warm one, and how large its slug is.

Starts a real `dynomesh control` (SQLite) whose builds' pip uses the test wheelhouse served on
loopback (tests/wheelindex.py: fetch it first, see README "Run the tests"), so no network is
involved and pip's downloads cost a loopback copy. Each run creates a new app (an empty
per-app cache: cold), builds examples/flask, then builds it again unchanged (warm: the cached
virtualenv is reused, pip finds everything satisfied). A build's time is from the upload's
start to the build's end (`POST /apps/{app}/builds` … the output stream's end), and is split
at the build's own step lines. Bounded: `--runs` pairs. Prints a table and writes
bench/results/builds.json.

    python bench/build_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import stamp, write_result  # noqa: E402
from controlplane.cli.pack import pack  # noqa: E402
from tests.controlplane.harness import ControlPlane  # noqa: E402
from tests.wheelindex import WheelIndex, missing_reason, wheelhouse  # noqa: E402

# The build's step lines that end each phase (controlplane/builds/python.py, runner.py).
PHASES = (("venv", "-----> Installing requirements with pip"),
          ("pip", "-----> Compressing the slug"),
          ("compress", "-----> Releasing"))


async def build_once(session: aiohttp.ClientSession, app: str, source) -> dict:
    data = source.path.read_bytes()
    started = time.perf_counter()
    async with session.post(f"/apps/{app}/builds", data=data, headers={
            "X-Slug-Checksum": f"sha256:{source.sha256}",
            "Content-Type": "application/gzip"}) as response:
        build = await response.json()
        assert response.status == 201, build
    marks: dict[str, float] = {}
    async with session.get(f"/apps/{app}/builds/{build['number']}/output") as response:
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            for phase, ending in PHASES:
                if line.startswith(ending):
                    marks[phase] = time.perf_counter()
    total = time.perf_counter() - started
    async with session.get(f"/apps/{app}/builds/{build['number']}") as response:
        build = await response.json()
    assert build["status"] == "succeeded", build
    async with session.get(f"/apps/{app}/releases/{build['release']['version']}") as response:
        release = await response.json()
    async with session.get(f"/apps/{app}/slugs/{release['slug']['id']}") as response:
        slug = await response.json()
    phases, last = {}, started
    for phase, _ in PHASES:
        if phase in marks:
            phases[phase] = round(marks[phase] - last, 2)
            last = marks[phase]
    return {"seconds": round(total, 2), "phases": phases, "slug_bytes": slug["size"]}


async def run(plane: ControlPlane, runs: int) -> list[dict]:
    token = json.loads((plane.home / "credentials.json").read_text())["token"]
    work = Path(tempfile.mkdtemp(prefix="dynomesh-bench-builds-src-"))
    shutil.copytree(ROOT / "examples" / "flask", work / "flask")
    source = pack(work / "flask")
    results = []
    try:
        async with aiohttp.ClientSession(plane.url, headers={
                "Authorization": f"Bearer {token}"}) as session:
            for number in range(runs):
                app = f"bench-build-{number}"
                async with session.post("/apps", json={"name": app}) as response:
                    assert response.status == 201, await response.text()
                cold = await build_once(session, app, source)
                warm = await build_once(session, app, source)
                results.append({"cold": cold, "warm": warm})
                print(f"run {number + 1}: cold {cold['seconds']} s, warm {warm['seconds']} s",
                      file=sys.stderr)
    finally:
        source.path.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    return results


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "builds.json",
                        help="JSON file (default bench/results/builds.json)")
    args = parser.parse_args()
    if missing_reason() is not None:
        print(missing_reason(), file=sys.stderr)
        return 1
    parent = Path(tempfile.mkdtemp(prefix="dynomesh-bench-builds-"))
    parent.chmod(0o755)  # the build user passes through it to its work directory
    try:
        with WheelIndex(wheelhouse()) as index:
            plane = ControlPlane(parent / "home", extra_args=(
                "--build-pip-index-url", index.url, "--builds-dir", str(parent / "builds")))
            plane.start()
            try:
                runs = asyncio.run(run(plane, args.runs))
            finally:
                plane.stop()
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    rows = []
    for kind in ("cold", "warm"):
        builds = [r[kind] for r in runs]
        row = {"cache": kind, "runs": len(builds),
               "median_s": median([b["seconds"] for b in builds]),
               "min_s": min(b["seconds"] for b in builds),
               "max_s": max(b["seconds"] for b in builds),
               "slug_mb": round(statistics.median(b["slug_bytes"] for b in builds) / 2**20, 2)}
        for phase, _ in PHASES:
            row[f"{phase}_s"] = median([b["phases"].get(phase, 0.0) for b in builds])
        rows.append(row)
    header = (f"{'cache':<6} {'runs':>4} {'median s':>9} {'min s':>6} {'max s':>6} "
              f"{'venv s':>7} {'pip s':>6} {'gzip s':>7} {'slug MB':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['cache']:<6} {r['runs']:>4} {r['median_s']:>9} {r['min_s']:>6} "
              f"{r['max_s']:>6} {r['venv_s']:>7} {r['pip_s']:>6} {r['compress_s']:>7} "
              f"{r['slug_mb']:>8}")
    result = {**stamp("builds", load_average_at_end=os.getloadavg()),
              "notes": "examples/flask (flask 3.1.3, gunicorn 26.2.0 and their 6 dependencies) "
                       "built by `dynomesh control` as the unprivileged build user, pip from a "
                       "loopback index; 'venv' is upload + unpack + venv --copies (with pip), "
                       "or the cached venv's copy when warm; 'pip' pip install (+ relocation, "
                       "+ caching the venv when cold); 'gzip' packing the slug at level 6; "
                       "a shared 2-core machine, so absolute seconds are noisy",
              "rows": rows, "runs": runs}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
