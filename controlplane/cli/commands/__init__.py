"""Importing this package registers every user command."""

from controlplane.cli.commands import (addons, apps, builds, certs, certs_auto,  # noqa: F401
                                       config, deploy, drains, logs, pool, ps, routers,
                                       routersettings, run, tokens)
