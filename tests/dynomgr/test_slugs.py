"""The slug cache and unpacking untrusted slugs (in-process, real files and a real HTTP server)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile

import pytest
from aiohttp import web

from dynomgr.assignments import SlugRef
from dynomgr.errors import SlugError
from dynomgr.slugs import SlugCache, default_fetchers, unpack


def tarball(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o4755 if name.endswith(".suid") else 0o644
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ref_for(url: str, data: bytes) -> SlugRef:
    return SlugRef(url, hashlib.sha256(data).hexdigest())


@pytest.fixture(params=["filter", "fallback"])
def extraction(request, monkeypatch):
    """Run each unpack test with the stdlib's data filter and with our own checks (Python
    3.11 before 3.11.4 has no filter)."""
    if request.param == "fallback":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return request.param


def test_unpack_makes_a_private_fresh_directory(tmp_path, extraction):
    slug = tmp_path / "slug.tgz"
    slug.write_bytes(tarball([("Procfile", b"web: ./run\n"), ("bin/tool.suid", b"#!/bin/sh\n")]))
    dest = tmp_path / "dyno"
    unpack(slug, "file:///slug.tgz", dest, owner=None)
    assert (dest / "Procfile").read_text() == "web: ./run\n"
    assert oct(dest.stat().st_mode & 0o777) == "0o700"
    assert not (dest / "bin/tool.suid").stat().st_mode & 0o4000  # setuid bit stripped
    with pytest.raises(FileExistsError):
        unpack(slug, "file:///slug.tgz", dest, owner=None)  # never reuses a directory


def test_members_that_would_land_outside_the_slug_are_refused(tmp_path, extraction):
    slug = tmp_path / "evil.tgz"
    slug.write_bytes(tarball([("Procfile", b"web: x\n"), ("../escaped.txt", b"x")]))
    dest = tmp_path / "inner" / "dyno"
    dest.parent.mkdir()
    with pytest.raises(SlugError, match=r"slug file:///evil\.tgz has an unsafe member"):
        unpack(slug, "file:///evil.tgz", dest, owner=None)
    assert not (tmp_path / "inner" / "escaped.txt").exists()


def test_absolute_member_names_land_inside_the_slug(tmp_path, extraction):
    slug = tmp_path / "abs.tgz"
    slug.write_bytes(tarball([("/etc/dynomgr-escaped.txt", b"x")]))
    unpack(slug, "file:///abs.tgz", tmp_path / "dyno", owner=None)
    assert (tmp_path / "dyno" / "etc" / "dynomgr-escaped.txt").read_bytes() == b"x"
    assert not os.path.exists("/etc/dynomgr-escaped.txt")


def test_a_symlink_pointing_outside_is_refused(tmp_path, extraction):
    link = tarfile.TarInfo("etc-passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    slug = tmp_path / "link.tgz"
    slug.write_bytes(tarball([link]))
    with pytest.raises(SlugError, match="unsafe member|pointing outside"):
        unpack(slug, "file:///link.tgz", tmp_path / "dyno", owner=None)


def test_a_file_that_is_not_a_gzipped_tar_is_r17(tmp_path):
    slug = tmp_path / "junk.tgz"
    slug.write_bytes(b"plain text")
    with pytest.raises(SlugError, match=r"is not a readable \.tar\.gz") as caught:
        unpack(slug, "file:///junk.tgz", tmp_path / "dyno", owner=None)
    assert caught.value.code == "R17"


async def test_concurrent_starts_of_one_release_share_one_download(tmp_path):
    data = tarball([("Procfile", b"web: x\n")])
    hits = []
    asked, answer = asyncio.Event(), asyncio.Event()

    async def serve(request):
        hits.append(request.path)
        asked.set()
        await answer.wait()  # held until every start has asked for the slug
        return web.Response(body=data)

    app = web.Application()
    app.router.add_get("/slugs/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    cache = SlugCache(cache_dir, default_fetchers())
    try:
        ref = ref_for(f"http://127.0.0.1:{port}/slugs/v7.tgz", data)
        starts = asyncio.gather(*(cache.get(ref) for _ in range(10)))
        # The ten started in one loop turn, before the first request could reach the server:
        # once it has, every start is waiting for that download.
        await asyncio.wait_for(asked.wait(), 10)
        answer.set()
        paths = await starts
        assert len(set(paths)) == 1 and paths[0].read_bytes() == data
        assert hits == ["/slugs/v7.tgz"]
        await cache.get(ref)  # later starts hit the cache
        assert hits == ["/slugs/v7.tgz"] and cache.downloads == 1

        bad = SlugRef(f"http://127.0.0.1:{port}/slugs/v8.tgz", "0" * 64)
        with pytest.raises(SlugError, match=r"has SHA-256 [0-9a-f]{12}…, expected 000000000000…"):
            await cache.get(bad)
        # Neither the bad download nor its partial file stays in the cache.
        assert sorted(p.name for p in cache_dir.iterdir()) == [f"{ref.sha256}.tgz"]

        gone = SlugRef(f"http://127.0.0.1:{port}/elsewhere.tgz", "1" * 64)
        with pytest.raises(SlugError, match=r"not found \(HTTP 404\)"):
            await cache.get(gone)
        assert cache.prune(keep=set()) == 1
        assert list(cache_dir.iterdir()) == []
    finally:
        await cache.aclose()
        await runner.cleanup()
