"""Slugs: fetched once per release into a content-addressed cache, verified, unpacked per start.

A slug is a `.tar.gz` with a `Procfile` at its root. Fetchers are looked up by URL scheme, so a
new storage is one more entry in the map. Slugs in S3 need none: the control plane's slug URL
redirects to a presigned https:// URL, which the HTTP fetcher follows without the token. The cache is keyed by the
slug's SHA-256: every dyno of a release on this VM shares one download, and a file whose digest
does not match is never cached (Heroku's R17, "Checksum error").
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Callable, Mapping, Protocol
from urllib.parse import unquote, urlsplit

from dynomgr.assignments import SlugRef
from dynomgr.errors import SlugError

_CHUNK = 1 << 20
# Raised by the "data" extraction filter (Python 3.11.4+) for members that would escape.
_FILTER_ERROR = getattr(tarfile, "FilterError", None)


class SlugFetcher(Protocol):
    async def fetch(self, url: str, dest: Path) -> None:
        """Write the slug at `url` to `dest`. Raises `SlugError` naming the URL."""
        ...

    async def aclose(self) -> None: ...


class FileFetcher:
    """file:///srv/slugs/hello-v7.tgz — a slug store on a local or mounted disk."""

    async def fetch(self, url: str, dest: Path) -> None:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise SlugError(f"slug {url}: file:// URLs must be local (file:///path)")
        source = Path(unquote(parts.path))
        try:
            await asyncio.to_thread(shutil.copyfile, source, dest)
        except FileNotFoundError as exc:
            raise SlugError(f"slug {url} not found") from exc
        except OSError as exc:
            raise SlugError(f"slug {url} cannot be read: {exc.strerror or exc}") from exc

    async def aclose(self) -> None:
        return None


class HttpFetcher:
    """http(s):// — the control plane's slug endpoint, or any static file server.

    `authorize(url)` may claim a URL as the control plane's: it returns the URLs to try in turn
    (the same slug on each control node) and the headers that carry the agent's token. URLs it
    does not claim are fetched as they are, without credentials."""

    def __init__(
        self,
        timeout: float = 300.0,
        authorize: Callable[[str], tuple[list[str], dict[str, str]] | None] | None = None,
    ) -> None:
        self._timeout = timeout
        self._authorize = authorize
        self._session = None

    async def fetch(self, url: str, dest: Path) -> None:
        claimed = self._authorize(url) if self._authorize is not None else None
        targets, headers = claimed if claimed is not None else ([url], {})
        failures = []
        for target in targets:
            try:
                await self._fetch_one(target, dest, headers)
                return
            except _TryElsewhere as exc:
                failures.append(str(exc))
        raise SlugError(f"slug {url} could not be downloaded: {'; '.join(failures)}")

    async def _fetch_one(self, url: str, dest: Path, headers: dict[str, str]) -> None:
        import aiohttp  # only agents that fetch over HTTP pay for the import

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        try:
            async with self._session.get(url, headers=headers) as response:
                if response.status >= 500:
                    raise _TryElsewhere(f"{url}: HTTP {response.status}")
                if response.status != 200:
                    what = "not found" if response.status == 404 else "not available"
                    raise SlugError(f"slug {url} {what} (HTTP {response.status})")
                with open(dest, "wb") as out:
                    async for chunk in response.content.iter_chunked(_CHUNK):
                        out.write(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _TryElsewhere(f"{url}: {exc or type(exc).__name__}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _TryElsewhere(Exception):
    """A passing failure of one URL (unreachable, 5xx): the next candidate may serve."""


def default_fetchers(
    authorize: Callable[[str], tuple[list[str], dict[str, str]] | None] | None = None,
) -> dict[str, SlugFetcher]:
    http = HttpFetcher(authorize=authorize)
    return {"file": FileFetcher(), "http": http, "https": http}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class SlugCache:
    def __init__(self, directory: Path, fetchers: Mapping[str, SlugFetcher]) -> None:
        self.directory = directory
        self.fetchers = fetchers
        self.downloads = 0  # fetches that reached a fetcher; for metrics and tests
        self._inflight: dict[str, asyncio.Future[Path]] = {}

    @property
    def schemes(self) -> frozenset[str]:
        return frozenset(self.fetchers)

    def path_for(self, slug: SlugRef) -> Path:
        return self.directory / f"{slug.sha256}.tgz"

    async def get(self, slug: SlugRef) -> Path:
        """The verified local copy of `slug`, downloading it if this VM has not yet."""
        path = self.path_for(slug)
        if path.exists():
            return path
        pending = self._inflight.get(slug.sha256)
        if pending is None:
            pending = asyncio.ensure_future(self._download(slug, path))
            self._inflight[slug.sha256] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(slug.sha256, None))
        # shield: one dyno being stopped must not cancel a download others wait for.
        return await asyncio.shield(pending)

    async def _download(self, slug: SlugRef, path: Path) -> Path:
        fetcher = self.fetchers.get(slug.scheme)
        if fetcher is None:
            raise SlugError(f"slug {slug.url}: no fetcher for {slug.scheme}://")
        partial = path.with_name(f".{slug.sha256}.{secrets.token_hex(4)}.part")
        self.downloads += 1
        try:
            await fetcher.fetch(slug.url, partial)
            digest = await asyncio.to_thread(sha256_of, partial)
            if digest != slug.sha256:
                raise SlugError(
                    f"slug {slug.url} has SHA-256 {digest[:12]}…, expected {slug.sha256[:12]}…"
                )
            os.replace(partial, path)
        except OSError as exc:
            raise SlugError(f"slug {slug.url} could not be stored in {self.directory}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
        return path

    def prune(self, keep: set[str]) -> int:
        """Delete cached slugs whose SHA-256 is not in `keep`; returns how many went."""
        removed = 0
        for entry in self.directory.glob("*.tgz"):
            if entry.stem not in keep:
                entry.unlink(missing_ok=True)
                removed += 1
        return removed

    async def aclose(self) -> None:
        for fetcher in {id(f): f for f in self.fetchers.values()}.values():
            await fetcher.aclose()


def unpack(slug_path: Path, slug_url: str, dest: Path, owner: tuple[int, int] | None) -> None:
    """Unpack into `dest` (which must not exist), private to `owner` (uid, gid). Blocking."""
    dest.mkdir(mode=0o700)
    try:
        with tarfile.open(slug_path, "r:gz") as archive:
            _extract(archive, dest, slug_url)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        if _FILTER_ERROR is not None and isinstance(exc, _FILTER_ERROR):
            raise SlugError(f"slug {slug_url} has an unsafe member: {exc}") from exc
        raise SlugError(f"slug {slug_url} is not a readable .tar.gz: {exc}") from exc
    if owner is not None:
        uid, gid = owner
        os.chown(dest, uid, gid)
        for root, dirs, files in os.walk(dest):
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _extract(archive: tarfile.TarFile, dest: Path, slug_url: str) -> None:
    """Extract an untrusted archive: nothing may land outside `dest`, no device files, no
    setuid bits. Python 3.11.4+ has this as the "data" filter; older 3.11s get the same checks
    done here."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(dest, filter="data")
        return
    root = dest.resolve()
    members = archive.getmembers()
    for member in members:
        member.name = member.name.lstrip("/")  # as the data filter does: /etc/x -> <slug>/etc/x
        target = (root / member.name).resolve()
        if not target.is_relative_to(root):
            raise SlugError(f"slug {slug_url} has an unsafe member {member.name!r} (outside the slug)")
        if member.isdev():
            raise SlugError(f"slug {slug_url} has a device file {member.name!r}")
        if member.issym() or member.islnk():
            base = target.parent if member.issym() else root
            if os.path.isabs(member.linkname) or not (base / member.linkname).resolve().is_relative_to(root):
                raise SlugError(f"slug {slug_url} has a link {member.name!r} pointing outside the slug")
        member.mode &= 0o755  # no setuid/setgid/sticky bits, no group or world write
    archive.extractall(dest, members=members)
