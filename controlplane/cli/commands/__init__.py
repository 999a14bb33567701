"""Importing this package registers every user command."""

from controlplane.cli.commands import (addons, apps, config, deploy, drains, logs, ps,  # noqa: F401
                                       run, tokens)
