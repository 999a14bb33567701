"""Slug files on local disk: `$DYNOMESH_HOME/slugs/<id>.tar.gz` (S3 comes with the EC2 pool).

A slug is a gzip-compressed tar of the app's directory, paths relative to the app root, with
a `Procfile` at the top (see docs/api.md, "Slugs"). An upload streams into a temporary file
while its SHA-256 is computed; only a slug whose checksum matches the one the client declared,
that unpacks safely and that has a valid Procfile is fsynced and renamed into place, before the
store records it. A crash in between leaves at most an unreferenced file, never a row without
its file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tarfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from controlplane import procfile


class SlugRejected(ValueError):
    """The upload is not a usable slug; the message says why."""


class SlugTooLarge(SlugRejected):
    pass


class ChecksumMismatch(SlugRejected):
    pass


@dataclass(frozen=True)
class ReceivedSlug:
    id: str
    checksum: str  # "sha256:<hex>"
    size: int
    process_types: dict[str, str]


def parse_checksum(text: str | None) -> str:
    """The hex digest of a `sha256:<64 hex>` checksum header; SlugRejected otherwise."""
    algorithm, _, digest = (text or "").partition(":")
    if algorithm.lower() != "sha256" or len(digest) != 64 or not all(
            c in "0123456789abcdef" for c in digest.lower()):
        raise SlugRejected("send the slug's checksum as 'X-Slug-Checksum: sha256:<64 hex digits>'")
    return digest.lower()


def inspect(path: Path) -> dict[str, str]:
    """Check a slug archive and return its Procfile's process types."""
    found: bytes | None = None
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            for member in archive:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise SlugRejected(f"slug member {member.name!r} points outside the app")
                if not (member.isfile() or member.isdir() or member.issym()):
                    raise SlugRejected(f"slug member {member.name!r} is not a file, directory "
                                       "or symlink")
                if member.issym() and (PurePosixPath(member.linkname).is_absolute()
                                       or ".." in PurePosixPath(member.linkname).parts):
                    raise SlugRejected(f"symlink {member.name!r} points outside the app")
                if member.isfile() and name == PurePosixPath(procfile.PROCFILE):
                    handle = archive.extractfile(member)
                    found = handle.read(procfile.MAX_BYTES + 1) if handle else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SlugRejected(f"the slug is not a readable .tar.gz archive ({exc})") from exc
    if found is None:
        raise SlugRejected("the slug has no Procfile at its top level: add one, e.g. "
                           "'web: python web.py'")
    try:
        return procfile.parse_bytes(found)
    except procfile.ProcfileError as exc:
        raise SlugRejected(str(exc)) from exc


async def receive_file(chunks: AsyncIterator[bytes], temporary: Path, *, expected_sha256: str,
                       max_bytes: int, what: str) -> int:
    """Stream an upload into `temporary`, checking its size and SHA-256, and fsync it; its size.
    The caller removes the file if this raises."""
    digest = hashlib.sha256()
    size = 0
    with open(temporary, "wb") as handle:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise SlugTooLarge(f"the {what} is over the {max_bytes}-byte limit: list what "
                                   "it need not carry in .slugignore")
            digest.update(chunk)
            handle.write(chunk)  # page-cache writes; the fsync below runs on a thread
        actual = digest.hexdigest()
        if actual != expected_sha256:
            raise ChecksumMismatch(
                f"the {what}'s SHA-256 is {actual} but the client declared "
                f"{expected_sha256}: the upload was damaged, deploy again")
        await asyncio.to_thread(os.fsync, handle.fileno())
    return size


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SlugStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._incoming = root / ".incoming"

    def path(self, slug_id: str) -> Path:
        return self.root / f"{slug_id}.tar.gz"

    def prepare(self) -> None:
        self._incoming.mkdir(parents=True, exist_ok=True)
        # Leftovers of uploads interrupted by a crash.
        for leftover in self._incoming.glob("*.tmp"):
            leftover.unlink(missing_ok=True)

    async def receive(self, chunks: AsyncIterator[bytes], *, expected_sha256: str,
                      max_bytes: int) -> ReceivedSlug:
        slug_id = str(uuid.uuid4())
        temporary = self._incoming / f"{slug_id}.tmp"
        try:
            await receive_file(chunks, temporary, expected_sha256=expected_sha256,
                               max_bytes=max_bytes, what="slug")
            return await self._publish_checked(slug_id, temporary, expected_sha256)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    async def adopt(self, path: Path) -> ReceivedSlug:
        """Make a slug of an archive on this disk (a build's), moving it into place."""
        slug_id = str(uuid.uuid4())
        temporary = self._incoming / f"{slug_id}.tmp"
        try:
            await asyncio.to_thread(shutil.move, path, temporary)  # maybe another filesystem
            digest = await asyncio.to_thread(_sha256_of, temporary)
            await asyncio.to_thread(_fsync_file, temporary)
            return await self._publish_checked(slug_id, temporary, digest)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    async def _publish_checked(self, slug_id: str, temporary: Path, sha256: str) -> ReceivedSlug:
        process_types = await asyncio.to_thread(inspect, temporary)
        size = temporary.stat().st_size
        await asyncio.to_thread(self._publish, temporary, self.path(slug_id))
        return ReceivedSlug(slug_id, f"sha256:{sha256}", size, process_types)

    def _publish(self, temporary: Path, final: Path) -> None:
        os.replace(temporary, final)
        fd = os.open(self.root, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, slug_ids: list[str]) -> None:
        for slug_id in slug_ids:
            self.path(slug_id).unlink(missing_ok=True)
