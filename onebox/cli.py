"""`dynomesh up`: the command line -> an `UpConfig` -> the supervised platform."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from onebox.config import Endpoint, UpConfig, default_vm_id
from onebox.output import say_early

DESCRIPTION = """\
Run the whole platform on this machine: the control plane (state in an embedded SQLite
database under the home directory), one router and one dyno manager, each a process of its own,
supervised: their output comes out prefixed with their names, and one that dies is started
again. Ctrl-C or SIGTERM stops the router, the dyno manager (and every dyno), then the control
plane, and exits 0.
"""

EPILOG = """\
example:
  dynomesh up
  # in another terminal:
  dynomesh apps:create hello && dynomesh deploy examples/hello --app hello
  dynomesh ps:scale web=2 --app hello
  curl http://hello.localhost:8080/

On a first start in a new home it creates the CLI's credentials (credentials.json) and the
router's and dyno manager's tokens (router.token, dynomgr.token) there. State survives a restart.
"""


def build_parser() -> argparse.ArgumentParser:
    defaults = UpConfig(home=Path("."))
    parser = argparse.ArgumentParser(prog="dynomesh up", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", metavar="DIR",
                        help="state, slugs, credentials and tokens (default $DYNOMESH_HOME or "
                             "~/.dynomesh)")
    ports = parser.add_argument_group("addresses")
    ports.add_argument("--api", default=str(defaults.api), metavar="HOST:PORT",
                       help="the control plane's API (default %(default)s)")
    ports.add_argument("--http", default=str(defaults.http), metavar="HOST:PORT",
                       help="where the router serves apps (default %(default)s; 0.0.0.0:8080 "
                            "to serve other machines too)")
    ports.add_argument("--https", metavar="HOST:PORT",
                       help="serve apps over HTTPS here too, e.g. 127.0.0.1:8443 (off by "
                            "default); certificates: dynomesh certs:add CERT KEY --app APP")
    ports.add_argument("--router-admin", default=str(defaults.router_admin), metavar="HOST:PORT",
                       help="the router's /readyz and /metrics (default %(default)s)")
    ports.add_argument("--dynomgr-admin", default=str(defaults.dynomgr_admin),
                       metavar="HOST:PORT",
                       help="the dyno manager's /healthz, /dynos and /metrics (default "
                            "%(default)s)")
    ports.add_argument("--base-domain", default=defaults.base_domain, metavar="DOMAIN",
                       help="apps answer at <app>.DOMAIN (default %(default)s)")
    more = parser.add_argument_group("more")
    more.add_argument("--data-dir", type=Path, metavar="DIR",
                      help="the dyno manager's slug cache and dyno directories (default "
                           "HOME/dynomgr; as root, /var/lib/dynomesh/dynomgr when dyno users "
                           "cannot enter HOME)")
    more.add_argument("--vm-id", default=None, metavar="ID",
                      help="this machine's VM id, bound to the dyno manager's token (default: "
                           "the host name)")
    more.add_argument("--ready-timeout", type=float, default=defaults.ready_timeout,
                      metavar="S", help="wait this long for the router's first routing table "
                      "and the dyno manager's first assignments (default %(default)s)")
    more.add_argument("--stop-timeout", type=float, default=defaults.stop_timeout, metavar="S",
                      help="a part still running this long after SIGTERM is killed (default "
                           "%(default)s)")
    addons = parser.add_argument_group("add-ons")
    addons.add_argument("--addons-database-url", metavar="URL",
                        help="postgresql://ADMIN:PASSWORD@HOST:PORT/postgres, ADMIN a "
                             "superuser, PUBLIC's CONNECT revoked on its databases: make apps' "
                             "databases there (default $DYNOMESH_ADDONS_DATABASE_URL; else a "
                             "local server is started when PostgreSQL is installed)")
    addons.add_argument("--addons-postgres-port", type=int,
                        default=defaults.addons_postgres_port, metavar="PORT",
                        help="the local add-on server's port on 127.0.0.1 (default "
                             "%(default)s)")
    addons.add_argument("--no-addons-postgres", action="store_true",
                        help="start no local PostgreSQL for add-ons")
    slugs = parser.add_argument_group("slug store")
    slugs.add_argument("--slug-store", metavar="s3://BUCKET/PREFIX",
                       default=os.environ.get("DYNOMESH_SLUG_STORE"),
                       help="keep slugs in this S3 bucket (AWS credentials from the usual "
                            "places; default $DYNOMESH_SLUG_STORE, else HOME/slugs)")
    slugs.add_argument("--slug-store-endpoint", metavar="URL",
                       help="an S3-compatible service's URL (default $AWS_ENDPOINT_URL_S3, "
                            "else AWS)")
    slugs.add_argument("--slug-store-region", metavar="REGION",
                       help="the bucket's AWS region (default the AWS environment's)")
    return parser


def build_config(args: argparse.Namespace, environ: dict[str, str]) -> UpConfig:
    home = args.home or environ.get("DYNOMESH_HOME") or str(Path.home() / ".dynomesh")
    return UpConfig(
        home=Path(home).expanduser().resolve(),
        api=Endpoint.parse(args.api, "--api"),
        http=Endpoint.parse(args.http, "--http"),
        https=Endpoint.parse(args.https, "--https") if args.https else None,
        router_admin=Endpoint.parse(args.router_admin, "--router-admin"),
        dynomgr_admin=Endpoint.parse(args.dynomgr_admin, "--dynomgr-admin"),
        base_domain=args.base_domain.lower(),
        dynomgr_data_dir=args.data_dir.resolve() if args.data_dir else None,
        vm_id=args.vm_id or default_vm_id(),
        ready_timeout=args.ready_timeout,
        stop_timeout=args.stop_timeout,
        addons_database_url=(args.addons_database_url
                             or environ.get("DYNOMESH_ADDONS_DATABASE_URL") or None),
        local_addons_postgres=not args.no_addons_postgres,
        addons_postgres_port=args.addons_postgres_port,
        slug_store=args.slug_store or None,
        slug_store_endpoint=args.slug_store_endpoint,
        slug_store_region=args.slug_store_region,
    )


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = build_config(args, dict(os.environ))
    except ValueError as error:
        parser.error(str(error))
    from onebox.supervisor import Platform

    try:
        return asyncio.run(Platform(config).run())
    except KeyboardInterrupt:  # a signal before the handlers were installed
        say_early("interrupted")
        return 130
