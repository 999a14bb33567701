"""Importing this package registers every user command."""

from controlplane.cli.commands import (addons, apps, builds, certs_auto, config,  # noqa: F401
                                       deploy, drains, logs, pool, ps, run, tokens)
