"""Importing this package registers every user command."""

from controlplane.cli.commands import apps, config, deploy, tokens  # noqa: F401
