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


class UnsafeServer(AddonError):
    """The provider's server would not keep a new resource to its app (every role may reach
    some database there, or the admin is not a superuser): its operator must act."""


class Busy(AddonError):
    """Another request (on this or another control node) is creating or destroying the same
    add-on right now; running the command again once it is done is safe."""


class ResourceExists(AddonError):
    """A fresh add-on's resource name is already taken on the server (left by something
    else): it was not touched, and the add-on was not recorded."""


class Elsewhere(AddonError):
    """The add-on lives on another server than the one this platform is configured with now:
    finishing or destroying it here would miss its resource."""
