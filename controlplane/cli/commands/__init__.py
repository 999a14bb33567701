"""Importing this package registers every user command."""

from controlplane.cli.commands import addons, apps, config, deploy, logs, ps, tokens  # noqa: F401
