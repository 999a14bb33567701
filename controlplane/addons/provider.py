"""What an add-on provider is: the interface every kind (PostgreSQL now; Redis, S3 buckets
later) implements, so the service, the API and the CLI never know which kind they handle.

A provider makes and removes one resource per add-on, named by the platform
(`naming.derive`), and says which config var carries the app's credentials to it. Both
`provision` and `deprovision` are idempotent: after a crash the service calls them again with
the same resource name and they finish what is missing, so no half-made resource is left that
the user cannot remove. The service calls them only inside `exclusive(resource)`, so two
requests (on any control nodes) never work on one resource at once.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class AddonProvider(Protocol):
    kind: str        # what users type: `addons:create postgresql`
    config_var: str  # the config var the app finds its resource by: DATABASE_URL

    def location(self) -> str:
        """Where its resources live, fit to show (never credentials): `127.0.0.1:5432`."""

    async def check(self) -> None:
        """Reach the provider's server; `ProviderUnavailable` when it cannot be reached."""

    async def check_safe(self) -> None:
        """`check`, and `UnsafeServer` when a resource made there now would not be the app's
        alone (what to fix is in the message)."""

    def exclusive(self, resource: str) -> AbstractAsyncContextManager[None]:
        """Hold `resource` against every other holder on any control node while the block
        runs; `Busy` at once when another holds it. A holder that dies lets go."""

    async def provision(self, resource: str, *, fresh: bool) -> str:
        """Make `resource` (or finish making it) with fresh credentials; -> the value of
        `config_var` for the app. `fresh`: a new add-on, so a resource of that name that
        already exists is someone else's: `ResourceExists`, and nothing is touched. Raises
        `errors.AddonError` classes only."""

    async def deprovision(self, resource: str) -> None:
        """Remove `resource` and its credentials, whatever part of it exists."""
