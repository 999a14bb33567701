"""Where slugs live: the interface the API uses, the checks every upload passes, and the local
store (`$DYNOMESH_HOME/slugs/<id>.tar.gz`, the embedded default). S3 is controlplane/s3slugs.py.

A slug is a gzip-compressed tar of the app's directory, paths relative to the app root, with
a `Procfile` at the top (see docs/api.md, "Slugs"). An upload streams into a temporary file
while its SHA-256 is computed; only a slug whose checksum matches the one the client declared,
that unpacks safely and that has a valid Procfile is published (renamed into place, or its S3
upload completed), before the store records it. A crash in between leaves at most an
unreferenced file, never a row without its file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tarfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from controlplane import procfile


class SlugRejected(ValueError):
    """The upload is not a usable slug; the message says why."""


class SlugTooLarge(SlugRejected):
    pass


class ChecksumMismatch(SlugRejected):
    pass


class SlugStoreError(Exception):
    """The slug store cannot be used (a missing bucket, refused credentials, S3 away); the
    message names the store and what to do."""


@dataclass(frozen=True)
class ReceivedSlug:
    id: str
    checksum: str  # "sha256:<hex>"
    size: int
    process_types: dict[str, str]


@dataclass(frozen=True)
class LocalFile:
    """A slug served from this node's disk."""
    path: Path


@dataclass(frozen=True)
class Redirect:
    """A slug fetched from elsewhere: a short-lived URL that needs no other credentials."""
    url: str


class SlugStore(Protocol):
    """What the API needs of a slug store (local disk or S3)."""

    def describe(self) -> str: ...

    async def start(self) -> None:
        """Check the store is usable; SlugStoreError saying what to fix if not."""

    async def receive(self, chunks: AsyncIterator[bytes], *, expected_sha256: str,
                      max_bytes: int) -> ReceivedSlug: ...

    async def locate(self, slug_id: str) -> LocalFile | Redirect | None:
        """Where a dyno manager gets the slug; None if its file is gone."""

    async def remove(self, slug_ids: list[str]) -> None: ...

    async def close(self) -> None: ...


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


FILE_BLOCK = 1 << 20  # reads of a slug file on this disk


def new_slug_id() -> str:
    return str(uuid.uuid4())


async def spool(chunks: AsyncIterator[bytes], handle: BinaryIO, *, expected_sha256: str,
                max_bytes: int, what: str = "slug",
                also: Callable[[bytes], Awaitable[None]] | None = None) -> tuple[str, int]:
    """Write an upload (a slug, or a build's source) to `handle` (and hand each chunk to
    `also`) while hashing it; -> (hex SHA-256, size). SlugTooLarge past `max_bytes`,
    ChecksumMismatch at the end."""
    digest = hashlib.sha256()
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise SlugTooLarge(f"the {what} is over the {max_bytes}-byte limit: list what it "
                               "need not carry in .slugignore")
        digest.update(chunk)
        handle.write(chunk)  # page-cache writes; a store that keeps the file fsyncs it
        if also is not None:
            await also(chunk)
    actual = digest.hexdigest()
    if actual != expected_sha256:
        raise ChecksumMismatch(f"the {what}'s SHA-256 is {actual} but the client declared "
                               f"{expected_sha256}: the upload was damaged, deploy again")
    return actual, size


async def receive_file(chunks: AsyncIterator[bytes], temporary: Path, *, expected_sha256: str,
                       max_bytes: int, what: str) -> int:
    """Stream an upload into `temporary`, checking its size and SHA-256, and fsync it; its size.
    The caller removes the file if this raises."""
    with open(temporary, "wb") as handle:
        _, size = await spool(chunks, handle, expected_sha256=expected_sha256,
                              max_bytes=max_bytes, what=what)
        await asyncio.to_thread(os.fsync, handle.fileno())
    return size


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(FILE_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as handle:
        while block := await asyncio.to_thread(handle.read, FILE_BLOCK):
            yield block


async def adopt(store: SlugStore, path: Path) -> ReceivedSlug:
    """Make a slug of an archive on this node's disk (a build's) in any store, as if it had
    been uploaded: the same checks, the same publishing. `path` is removed either way."""
    try:
        digest = await asyncio.to_thread(_sha256_of, path)
        return await store.receive(_file_chunks(path), expected_sha256=digest,
                                   max_bytes=path.stat().st_size)
    finally:
        path.unlink(missing_ok=True)


class Incoming:
    """The directory uploads are spooled in while they are checked."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def prepare(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Leftovers of uploads interrupted by a crash.
            for leftover in self.directory.glob("*.tmp"):
                leftover.unlink(missing_ok=True)
        except OSError as exc:
            raise SlugStoreError(f"the slug directory {self.directory} cannot be used: "
                                 f"{exc.strerror or exc}: fix its permissions or pick another "
                                 "--home") from exc

    def path(self, slug_id: str) -> Path:
        return self.directory / f"{slug_id}.tmp"


class LocalSlugStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = Incoming(root / ".incoming")

    def describe(self) -> str:
        return f"slugs in {self.root}"

    def path(self, slug_id: str) -> Path:
        return self.root / f"{slug_id}.tar.gz"

    async def start(self) -> None:
        self.incoming.prepare()

    async def receive(self, chunks: AsyncIterator[bytes], *, expected_sha256: str,
                      max_bytes: int) -> ReceivedSlug:
        slug_id = new_slug_id()
        temporary = self.incoming.path(slug_id)
        try:
            with open(temporary, "wb") as handle:
                actual, size = await spool(chunks, handle, expected_sha256=expected_sha256,
                                           max_bytes=max_bytes)
                await asyncio.to_thread(os.fsync, handle.fileno())
            process_types = await asyncio.to_thread(inspect, temporary)
            await asyncio.to_thread(self._publish, temporary, self.path(slug_id))
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return ReceivedSlug(slug_id, f"sha256:{actual}", size, process_types)

    def _publish(self, temporary: Path, final: Path) -> None:
        os.replace(temporary, final)
        fd = os.open(self.root, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def locate(self, slug_id: str) -> LocalFile | None:
        path = self.path(slug_id)
        return LocalFile(path) if path.is_file() else None

    async def remove(self, slug_ids: list[str]) -> None:
        for slug_id in slug_ids:
            self.path(slug_id).unlink(missing_ok=True)

    async def close(self) -> None:
        return None


def open_slug_store(config) -> SlugStore:
    """The store `config` (a ControlConfig) names: S3 with --slug-store, else the home's."""
    if config.slug_store is None:
        return LocalSlugStore(config.slug_dir)
    from controlplane.s3slugs import S3SlugStore  # only S3 users import aioboto3

    return S3SlugStore(config.s3_settings, config.slug_dir / ".incoming")
