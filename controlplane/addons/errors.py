"""Typed add-on errors: the only exceptions that leave an add-on provider or the registry.

Each provider translates its client library's exceptions into these in one place; the API
maps each class to one HTTP status (controlplane/api/errors.py). Messages are shown to the user
as they are, so they name what to do next and never carry the provider's admin credentials.
"""

from __future__ import annotations


class AddonError(Exception):
    """Base class; the message is fit to show to a user."""


class UnknownKind(AddonError):
    """No provider of that kind exists (`addons:create redis` while only PostgreSQL ships)."""


class NotConfigured(AddonError):
    """The kind exists, but this platform was not given a server for it."""


class ProviderUnavailable(AddonError):
    """The provider's server cannot be reached, or refused the platform's credentials."""


class ProviderFailed(AddonError):
    """The provider's server was reached but refused the work."""
