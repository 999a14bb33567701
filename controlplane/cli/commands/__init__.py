"""Importing this package registers every user command."""

from controlplane.cli.commands import (addons, apps, builds, certs, config, deploy,  # noqa: F401
                                       drains, logs, pool, ps, run, tokens)
