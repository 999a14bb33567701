"""Slugs on S3: upload and download throughput of a ~50 MB slug through a real control plane.

Starts a moto server (its own process, on a free loopback port) and two real `dynomesh
control` processes: one keeping slugs in its home (the embedded default), one with
`--slug-store s3://…` on moto. For each, `--runs` times: upload the slug (POST
/apps/{app}/slugs, as `dynomesh deploy` streams it: the control plane hashes it, spools it,
checks its Procfile, and with S3 sends 8 MiB parts as they fill), then download it as a dyno
manager does (dynomgr's own SlugCache and HttpFetcher: the control plane's slug URL, with S3 a
307 to a presigned URL, then the SHA-256 check). The slug is a .tar.gz of random bytes, so gzip
cannot shrink it. A last row is boto3 straight to moto (no control plane, no agent), the floor
under the S3 row. Prints a table and writes bench/results/s3slugs.json.

moto keeps objects in memory and is pure Python (werkzeug): its figures are a floor for what
the control plane adds, not what AWS S3 gives (tens to hundreds of MB/s per connection).

    python bench/s3slugs_bench.py [--mb 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import stamp, write_result  # noqa: E402
from dynomgr.assignments import SlugRef  # noqa: E402
from dynomgr.slugs import SlugCache, default_fetchers  # noqa: E402
from tests.controlplane.harness import ControlPlane  # noqa: E402
from tests.motoserver import AWS_ENV, serve_in_a_process  # noqa: E402

CHUNK = 256 * 1024


def make_slug(directory: Path, megabytes: int) -> Path:
    path = directory / "slug.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        for name, data in (("Procfile", b"web: python web.py\n"),
                           ("ballast.bin", os.urandom(megabytes * 10**6))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


async def chunks(path: Path):
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            yield block


async def one_run(plane: ControlPlane, slug: Path, sha256: str, app: str,
                  scratch: Path) -> tuple[float, float]:
    headers = {"Authorization": f"Bearer {plane.token}"}
    async with aiohttp.ClientSession(plane.url, headers=headers) as session:
        started = time.perf_counter()
        async with session.post(f"/apps/{app}/slugs", data=chunks(slug), headers={
                "X-Slug-Checksum": f"sha256:{sha256}", "Content-Length": str(slug.stat().st_size),
                "Content-Type": "application/gzip"}) as response:
            body = await response.json()
            assert response.status == 201, body
        upload = time.perf_counter() - started

    def authorize(url: str):
        return ([url], headers) if url.startswith(plane.url + "/") else None

    cache_dir = Path(tempfile.mkdtemp(dir=scratch))
    cache = SlugCache(cache_dir, default_fetchers(authorize))
    try:
        started = time.perf_counter()
        fetched = await cache.get(SlugRef(f"{plane.url}/slugs/{body['id']}/download", sha256))
        download = time.perf_counter() - started
        fetched.unlink()
    finally:
        await cache.aclose()
    return upload, download


async def create_app(plane: ControlPlane, app: str) -> None:
    async with aiohttp.ClientSession(plane.url, headers={
            "Authorization": f"Bearer {plane.token}"}) as session:
        async with session.post("/apps", json={"name": app}) as response:
            assert response.status == 201, await response.text()


def measure(plane: ControlPlane, slug: Path, sha256: str, runs: int, scratch: Path) -> dict:
    asyncio.run(create_app(plane, "bench"))
    uploads, downloads = [], []
    for _ in range(runs):
        upload, download = asyncio.run(one_run(plane, slug, sha256, "bench", scratch))
        uploads.append(upload)
        downloads.append(download)
    return summarize(slug, uploads, downloads)


def direct(moto, slug: Path, runs: int) -> dict:
    """boto3 straight to moto with the same part size, one part at a time: what moto itself
    takes, the floor under the control plane's S3 row."""
    from boto3.s3.transfer import TransferConfig

    client = moto.client()
    parts = TransferConfig(multipart_threshold=8 * 2**20, multipart_chunksize=8 * 2**20,
                           use_threads=False)
    uploads, downloads = [], []
    for _ in range(runs):
        started = time.perf_counter()
        client.upload_file(str(slug), "bench-slugs", "direct.tar.gz", Config=parts)
        uploads.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.download_file("bench-slugs", "direct.tar.gz", str(slug) + ".down", Config=parts)
        downloads.append(time.perf_counter() - started)
    return summarize(slug, uploads, downloads)


def summarize(slug: Path, uploads: list[float], downloads: list[float]) -> dict:
    size_mb = slug.stat().st_size / 10**6
    return {"upload_s_p50": round(statistics.median(uploads), 3),
            "upload_mb_s": round(size_mb / statistics.median(uploads), 1),
            "download_s_p50": round(statistics.median(downloads), 3),
            "download_mb_s": round(size_mb / statistics.median(downloads), 1),
            "upload_s": [round(u, 3) for u in uploads],
            "download_s": [round(d, 3) for d in downloads]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="slug size in MB (default 50)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "s3slugs.json",
                        help="JSON file (default bench/results/s3slugs.json)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="dynomesh-bench-s3-"))
    slug = make_slug(scratch, args.mb)
    sha256 = hashlib.sha256(slug.read_bytes()).hexdigest()
    rows = []
    with serve_in_a_process() as moto:
        moto_url = moto.url
        moto.client().create_bucket(Bucket="bench-slugs")
        stores = {"local": (), "s3 (moto)": ("--slug-store", "s3://bench-slugs/slugs",
                                            "--slug-store-endpoint", moto_url)}
        for name, extra in stores.items():
            plane = ControlPlane(scratch / name.split()[0], extra_args=extra,
                                 environ=AWS_ENV).start()
            try:
                rows.append({"store": name, **measure(plane, slug, sha256, args.runs, scratch)})
            finally:
                plane.stop()
        rows.append({"store": "boto3→moto", **direct(moto, slug, args.runs)})
    size_mb = round(slug.stat().st_size / 10**6, 1)
    shutil.rmtree(scratch, ignore_errors=True)
    header = (f"{'store':<11} {'slug MB':>8} {'upload s':>9} {'upload MB/s':>12} "
              f"{'download s':>11} {'download MB/s':>14}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['store']:<11} {size_mb:>8} {r['upload_s_p50']:>9} {r['upload_mb_s']:>12} "
              f"{r['download_s_p50']:>11} {r['download_mb_s']:>14}")
    result = {**stamp("s3slugs"),
              "notes": f"{size_mb} MB incompressible slug, median of {args.runs} runs; control "
                       "plane on SQLite; moto server (in-memory, pure Python) in its own process "
                       "on loopback; 8 MiB parts; download = the dyno manager's fetch and "
                       "SHA-256 check",
              "slug_mb": size_mb, "rows": rows}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
