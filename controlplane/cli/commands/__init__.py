"""Importing this package registers every user command."""

from controlplane.cli.commands import (addons, apps, config, deploy, drains, logs,  # noqa: F401
                                       pool, ps, tokens)
