"""How builds run: where, as whom, for how long, how large a slug, and pip's index."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT = 15 * 60.0  # Heroku's build time limit: 15 minutes
DEFAULT_MAX_SLUG_BYTES = 500 * 1024 * 1024  # Heroku's slug limit: 500 MB compressed


@dataclass(frozen=True)
class PipOptions:
    """Where builds' pip looks for packages. None and no find-links: pip's own default (PyPI).
    Only find-links: those and nothing else (`--no-index`), as tests run with no network."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()

    def args(self) -> list[str]:
        argv = []
        if self.index_url is not None:
            argv += ["--index-url", self.index_url]
        elif self.find_links:
            argv.append("--no-index")
        for place in self.find_links:
            argv += ["--find-links", place]
        return argv


@dataclass(frozen=True)
class BuildSettings:
    root: Path  # work/<build>/ (fresh per build), cache/<app id>/ (kept), incoming/ (uploads)
    timeout: float = DEFAULT_TIMEOUT
    max_slug_bytes: int = DEFAULT_MAX_SLUG_BYTES
    pip: PipOptions = field(default_factory=PipOptions)

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError("--build-timeout must be more than 0 seconds")
        if self.max_slug_bytes <= 0:
            raise ValueError("--build-max-slug-mb must be more than 0")

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

