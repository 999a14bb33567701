"""certs:auto, certs:auto:enable, certs:auto:disable: automatic certificates (ACME), like
Heroku's Automated Certificate Management: a certificate per custom domain, obtained from the
control plane's ACME CA (Let's Encrypt by default) and renewed 30 days before it expires."""

from __future__ import annotations

from typing import Any

from controlplane.cli.commands.apps import app_path
from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, no_arguments, runs


def status_text(domain: dict[str, Any]) -> str:
    """`issued`, `pending`, or `failed: <the CA's reason>`."""
    if domain["status"] == "failed":
        return f"failed: {domain['reason']}"
    return domain["status"]


def print_status(acm: dict[str, Any]) -> None:
    """The per-domain table (also under `dynomesh certs`)."""
    name = acm["app"]["name"]
    if not acm["enabled"]:
        print(f"Automatic certificates are off for {name} "
              f"(`dynomesh certs:auto:enable --app {name}` turns them on)")
        return
    if not acm["domains"]:
        print(f"Automatic certificates are on for {name}, which has no custom domain yet: "
              f"`dynomesh domains:add HOST --app {name}` (wildcards need certs:add)")
        return
    print(f"Automatic certificates are on for {name}:")
    table(["DOMAIN", "STATUS", "EXPIRES"],
          [[d["hostname"], status_text(d), d["expires_at"] or ""] for d in acm["domains"]])


certs_auto = command("certs:auto", "show each custom domain's automatic certificate status",
                     example="dynomesh certs:auto --app hello\n"
                             "dynomesh certs:auto --app hello --json", json=True)(no_arguments)


@runs(certs_auto)
async def _(args, session):
    acm = await session.api.get(app_path(session.app()) + "/acm")
    if args.json:
        return emit_json(acm)
    print_status(acm)


@command("certs:auto:enable", "obtain and renew a certificate for each custom domain (ACME)",
         example="dynomesh certs:auto:enable --app hello\n"
                 "# Each custom domain's DNS must point at the routers (port 80): the CA checks "
                 "it\n# over HTTP (HTTP-01). `dynomesh certs --app hello` shows the progress; "
                 "run\n# this again to retry failed domains at once.", json=True)
def certs_auto_enable(parser):
    no_arguments(parser)


@runs(certs_auto_enable)
async def _(args, session):
    acm, _ = await session.api.call("POST", app_path(session.app()) + "/acm")
    if args.json:
        return emit_json(acm)
    print_status(acm)


@command("certs:auto:disable", "stop obtaining and renewing certificates for an app",
         example="dynomesh certs:auto:disable --app hello\n"
                 "# Certificates already issued stay until they expire or `certs:remove`.",
         json=True)
def certs_auto_disable(parser):
    no_arguments(parser)


@runs(certs_auto_disable)
async def _(args, session):
    acm, _ = await session.api.call("DELETE", app_path(session.app()) + "/acm")
    if args.json:
        return emit_json(acm)
    print(f"Automatic certificates are off for {acm['app']['name']}; certificates already "
          "issued stay until they expire or `dynomesh certs:remove`")
