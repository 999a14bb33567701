"""The add-on kinds this platform knows, and the providers it was configured with.

A kind is known even when no server was configured for it, so that `addons:create
postgresql` on a platform without `--addons-database-url` says how to configure one rather
than that PostgreSQL does not exist. Heroku's names for a kind (`heroku-postgresql`) are
accepted too, and so is a Heroku plan after a colon (`heroku-postgresql:essential-0`), so
commands copied from Heroku's documentation work; plans do not exist here (every add-on of a
kind is the same), and `addons:create` says so when one is given.
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.addons import errors
from controlplane.addons.provider import AddonProvider

# kind -> how to configure it (shown when it is asked for and not configured)
KINDS: dict[str, str] = {
    "postgresql": "start the control plane with --addons-database-url "
                  "postgresql://ADMIN:PASSWORD@HOST:PORT/postgres (`dynomesh up` starts a "
                  "local PostgreSQL itself when the PostgreSQL server is installed, e.g. "
                  "`apt-get install postgresql`)",
}
ALIASES: dict[str, str] = {"heroku-postgresql": "postgresql", "postgres": "postgresql"}


class AddonRegistry:
    def __init__(self, providers: Mapping[str, AddonProvider] = ()) -> None:
        self._providers = dict(providers)
        unknown = set(self._providers) - set(KINDS)
        if unknown:
            raise ValueError(f"providers of unknown kinds: {sorted(unknown)}")

    @staticmethod
    def kind(text: str) -> str:
        """The kind `text` names (a `:plan` after it aside); `UnknownKind` listing the kinds
        otherwise."""
        name = text.strip().lower().partition(":")[0]
        kind = ALIASES.get(name, name)
        if kind not in KINDS:
            raise errors.UnknownKind(
                f"there is no add-on kind {text!r}: the kinds are {', '.join(sorted(KINDS))} "
                "(e.g. `dynomesh addons:create postgresql --app APP`)")
        return kind

    def provider(self, text: str) -> AddonProvider:
        """The configured provider of the kind `text` names."""
        kind = self.kind(text)
        provider = self._providers.get(kind)
        if provider is None:
            raise errors.NotConfigured(
                f"this platform has no {kind} server for add-ons: {KINDS[kind]}")
        return provider

    def configured(self) -> list[str]:
        return sorted(self._providers)


def build_registry(addons_database_url: str | None) -> AddonRegistry:
    """The registry for the control plane's configuration."""
    providers: dict[str, AddonProvider] = {}
    if addons_database_url:
        from controlplane.addons.postgres import PostgresProvider
        providers["postgresql"] = PostgresProvider(addons_database_url)
    return AddonRegistry(providers)
