"""certs, certs:add, certs:remove: an app's TLS certificates (the router serves them by SNI)."""

from __future__ import annotations

import datetime
from pathlib import Path
from urllib.parse import quote

from controlplane.cli.commands.apps import app_path
from controlplane.cli.errors import usage
from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, no_arguments, runs

# PEM files of a chain and a key are a few KiB; anything far larger is not one.
_MAX_PEM = 256 * 1024


def _read_pem(path: str, what: str) -> str:
    file = Path(path)
    try:
        if file.stat().st_size > _MAX_PEM:
            raise usage(f"{path}: over {_MAX_PEM // 1024} KiB, not a PEM {what}")
        return file.read_text(encoding="ascii")
    except FileNotFoundError:
        raise usage(f"{path}: no such file (give the {what} in PEM)") from None
    except UnicodeDecodeError:
        raise usage(f"{path}: not PEM text (DER? convert it: openssl x509 -inform der -in "
                    f"{path} -out {path}.pem)") from None
    except OSError as error:
        raise usage(f"{path}: cannot read it ({error.strerror})") from None


def _expires(not_after: str, now: datetime.datetime | None = None) -> str:
    """`2027-03-01 (in 84 days)`, or `... (expired)`."""
    moment = datetime.datetime.fromisoformat(not_after)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    days = (moment - now).days
    when = "expired" if moment <= now else f"in {days} day{'s' if days != 1 else ''}"
    return f"{moment:%Y-%m-%d} ({when})"


# --- certs ---

certs = command("certs", "list an app's TLS certificates: names, expiry, source",
                example="dynomesh certs --app hello\ndynomesh certs --app hello --json",
                json=True)(no_arguments)


@runs(certs)
async def _(args, session):
    name = session.app()
    listed = await session.api.get(app_path(name) + "/certs")
    if args.json:
        return emit_json(listed)
    if not listed:
        print(f"{name} has no certificates: `dynomesh certs:add CERT KEY --app {name}` adds "
              "one (HTTPS then serves the self-signed default certificate)")
        return
    table(["ID", "NAMES", "EXPIRES", "SOURCE"],
          [[c["id"], ", ".join(c["names"]), _expires(c["not_after"]), c["source"]]
           for c in listed])


@command("certs:add", "add a TLS certificate and its private key to an app",
         example="dynomesh certs:add server.crt server.key --app hello\n"
                 "# CERT: the certificate, then its intermediates (PEM); KEY: its private "
                 "key,\n# unencrypted. Its names must cover one of the app's domains.",
         json=True)
def certs_add(parser):
    parser.add_argument("cert", metavar="CERT", help="PEM file: the certificate first, then "
                        "the intermediates it was issued by")
    parser.add_argument("key", metavar="KEY", help="PEM file: the certificate's private key, "
                        "without a passphrase (kept sealed; never shown again)")


@runs(certs_add)
async def _(args, session):
    name = session.app()
    body = {"chain": _read_pem(args.cert, "certificate chain"),
            "key": _read_pem(args.key, "private key")}
    cert, _ = await session.api.call("POST", app_path(name) + "/certs", json_body=body)
    if args.json:
        return emit_json(cert)
    print(f"Added certificate {cert['id']} to {name}")
    print(f"  names    {', '.join(cert['names'])}")
    print(f"  expires  {_expires(cert['not_after'])}")
    print(f"  issuer   {cert['issuer']}")


@command("certs:remove", "remove a TLS certificate from an app",
         example="dynomesh certs:remove 4f1c... --app hello   # the ID from `dynomesh certs`")
def certs_remove(parser):
    parser.add_argument("id", metavar="ID", help="the certificate's ID (dynomesh certs)")


@runs(certs_remove)
async def _(args, session):
    name = session.app()
    cert, _ = await session.api.call("DELETE",
                                     f"{app_path(name)}/certs/{quote(args.id, safe='')}")
    print(f"Removed certificate {cert['id']} ({', '.join(cert['names'])}) from {name}")
