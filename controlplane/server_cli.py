"""`dynomesh control`: run the control plane (the API now; feeds and the scheduler later)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from controlplane import credentials
from controlplane.config import (DEFAULT_LISTEN, DEFAULT_MAX_SLUG_BYTES, ControlConfig,
                                 parse_listen)
from controlplane.store import errors

EXAMPLES = """\
examples:
  dynomesh control                                   # SQLite under ~/.dynomesh, API on :5050
  dynomesh control --database-url postgresql://dynomesh@db.internal/dynomesh
  DYNOMESH_HOME=/srv/dynomesh dynomesh control --listen 0.0.0.0:5050

On its first start with a fresh home directory it creates a `user` token and writes the
CLI's credentials to $DYNOMESH_HOME/credentials.json (mode 0600), so `dynomesh apps:create`
works on this machine with no configuration.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynomesh control", description="Run the control plane: the REST API the CLI, "
        "routers and dyno managers talk to, over the state store.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"address of the API (default {DEFAULT_LISTEN}; port 0 picks one "
                             "and prints it)")
    parser.add_argument("--database-url", default=os.environ.get("DYNOMESH_DATABASE_URL"),
                        metavar="URL", help="postgresql://user@host/db to share state between "
                        "control nodes (default $DYNOMESH_DATABASE_URL, else embedded SQLite in "
                        "the home directory)")
    parser.add_argument("--home", default=None, metavar="DIR",
                        help="state, slugs and CLI credentials (default $DYNOMESH_HOME or "
                             "~/.dynomesh)")
    parser.add_argument("--base-domain", default="localhost", metavar="DOMAIN",
                        help="apps answer at <app>.DOMAIN (default localhost)")
    parser.add_argument("--router-port", type=int, default=8080, metavar="PORT",
                        help="the port routers serve apps on, for app URLs (default 8080)")
    parser.add_argument("--max-slug-size", type=int, default=DEFAULT_MAX_SLUG_BYTES // 2**20,
                        metavar="MIB", help="largest slug accepted, in MiB (default 500)")
    parser.add_argument("--change-history", type=int, default=10_000, metavar="N",
                        help="revisions of change history kept for feed clients that resume "
                             "(default 10000)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
        home = (credentials.default_home(os.environ) if args.home is None
                else os.path.expanduser(args.home))
        config = ControlConfig(
            home=Path(home).resolve(), listen_host=host, listen_port=port,
            database_url=args.database_url, base_domain=args.base_domain.lower(),
            router_port=args.router_port, max_slug_bytes=args.max_slug_size * 2**20,
            change_history=args.change_history)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from controlplane.server import serve
    try:
        import uvloop
        uvloop.run(serve(config))
    except OSError as exc:
        print(f"dynomesh control: cannot listen on {args.listen}: {exc.strerror or exc} "
              "(is another control plane running? pick another port with --listen)",
              file=sys.stderr)
        return 1
    except errors.StoreError as exc:
        print(f"dynomesh control: the store failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
