"""Importing this package registers every user command."""

from controlplane.cli.commands import (addons, apps, builds, config, deploy, drains,  # noqa: F401
                                       logs, pool, ps, routers, run, tokens)
