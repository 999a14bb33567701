"""`dynomesh control`: run the control plane (the API, the feeds, the scheduler)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from dynomesh.ready import Readiness
from controlplane import credentials
from controlplane.acme.settings import LETS_ENCRYPT, AcmeSettings
from controlplane.builds.settings import (DEFAULT_MAX_SLUG_BYTES as DEFAULT_BUILD_SLUG_BYTES,
                                         DEFAULT_TIMEOUT as DEFAULT_BUILD_TIMEOUT, PipOptions)
from controlplane.config import (DEFAULT_LISTEN, DEFAULT_MAX_SLUG_BYTES, ControlConfig,
                                 parse_listen)
from controlplane.slugstore import SlugStoreError
from controlplane.pool.ec2 import Ec2Settings
from controlplane.pool.settings import PoolConfig
from controlplane.store import errors

EXAMPLES = """\
examples:
  dynomesh control                                   # SQLite under ~/.dynomesh, API on :5050
  dynomesh control --database-url postgresql://dynomesh@db.internal/dynomesh
  DYNOMESH_HOME=/srv/dynomesh dynomesh control --listen 0.0.0.0:5050
  dynomesh control --database-url postgresql://… --slug-store s3://acme-slugs/dynomesh
  dynomesh control --database-url postgresql://... --public-url http://10.0.0.2:5050 \\
      --pool-provider ec2 --ec2-launch-template dynomesh-vm --pool-vm-capacity-mb 7680 \\
      --pool-max 20          # EC2 VMs launched as dynos need room, drained when idle

On its first start with a fresh home directory it creates a `user` token and writes the
CLI's credentials to $DYNOMESH_HOME/credentials.json (mode 0600), so `dynomesh apps:create`
works on this machine with no configuration.

Several control nodes may share one PostgreSQL database: all serve the API and the feeds,
one at a time schedules (the others take over within moments if it dies). They must then
share one slug store too: an S3 bucket (--slug-store), whose AWS credentials come from the
usual places (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role). Dyno
managers need none: they fetch slugs from presigned URLs the control plane hands out.
"""


def _amount(unit: str):
    """An argparse type: a number of `unit` (seconds, days), not negative."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of {unit}: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
        return value
    return parse


_seconds = _amount("seconds")
_days = _amount("days")



def _pool_arguments(parser: argparse.ArgumentParser) -> None:
    pool = parser.add_argument_group(
        "VM pool", "local (default): the dyno managers that register are the VMs. ec2: the "
        "scheduling node launches EC2 instances when dynos wait for room and terminates idle "
        "ones (credentials and region from the usual AWS sources)")
    pool.add_argument("--pool-provider", choices=["local", "ec2"], default="local",
                      help="who provides VMs (default local)")
    pool.add_argument("--pool-min", type=int, default=0, metavar="N",
                      help="VMs the pool keeps at least (default 0; `pool:scale` overrides)")
    pool.add_argument("--pool-max", type=int, default=10, metavar="N",
                      help="VMs the pool has at most (default 10; `pool:scale` overrides)")
    pool.add_argument("--pool-vm-capacity-mb", type=int, metavar="MB",
                      help="memory one pool VM offers dynos: its instance type's memory less "
                           "~512 MB for the system (needed with ec2)")
    pool.add_argument("--pool-idle-grace", type=_seconds, default=300.0, metavar="S",
                      help="a VM whose dynos fit elsewhere this long is drained and "
                           "terminated (default 300)")
    pool.add_argument("--pool-launch-timeout", type=_seconds, default=600.0, metavar="S",
                      help="a launched VM whose agent has not registered by then is "
                           "terminated (default 600)")
    pool.add_argument("--pool-reconcile-interval", type=_seconds, default=60.0, metavar="S",
                      help="how often to compare what the provider runs with the store "
                           "(default 60)")
    pool.add_argument("--lost-vm-retention", type=_seconds, default=86400.0, metavar="S",
                      help="a lost VM's row is removed this long after it was lost "
                           "(default 86400)")
    pool.add_argument("--pool-control-url", action="append", default=[], metavar="URL",
                      help="this control plane's URL as pool VMs reach it (repeat for "
                           "several nodes; default --public-url)")
    pool.add_argument("--pool-name", default="default", metavar="NAME",
                      help="the dynomesh:pool tag of this pool's instances (default default)")
    pool.add_argument("--pool-install-command", metavar="SH",
                      help="how a fresh instance installs dynomesh (default: pip install "
                           "dynomesh; `true` if the AMI has it)")
    pool.add_argument("--ec2-launch-template", metavar="ID|NAME",
                      help="launch template for pool instances (lt-... or its name)")
    pool.add_argument("--ec2-launch-template-version", default="$Default", metavar="V")
    pool.add_argument("--ec2-ami", metavar="AMI", help="image, with --ec2-instance-type "
                                                       "(overrides the template's)")
    pool.add_argument("--ec2-instance-type", metavar="TYPE", help="e.g. m6i.large")
    pool.add_argument("--ec2-subnet", metavar="SUBNET", help="subnet-... to launch into")
    pool.add_argument("--ec2-security-group", action="append", default=[], metavar="SG",
                      help="sg-... (repeat for several)")
    pool.add_argument("--ec2-region", metavar="REGION",
                      help="default: AWS_REGION / AWS_DEFAULT_REGION / ~/.aws/config")
    pool.add_argument("--ec2-endpoint-url", metavar="URL",
                      help="another EC2 endpoint (a local test server)")


def pool_config(args: argparse.Namespace) -> PoolConfig:
    ec2 = None
    if args.pool_provider == "ec2":
        extra = {} if args.pool_install_command is None else {
            "install_command": args.pool_install_command}
        ec2 = Ec2Settings(
            pool_name=args.pool_name, region=args.ec2_region,
            endpoint_url=args.ec2_endpoint_url, launch_template=args.ec2_launch_template,
            launch_template_version=args.ec2_launch_template_version, image_id=args.ec2_ami,
            instance_type=args.ec2_instance_type, subnet_id=args.ec2_subnet,
            security_groups=tuple(args.ec2_security_group), **extra)
    return PoolConfig(
        provider=args.pool_provider, min_vms=args.pool_min, max_vms=args.pool_max,
        capacity_mb=args.pool_vm_capacity_mb, idle_grace=args.pool_idle_grace,
        launch_timeout=args.pool_launch_timeout, lost_retention=args.lost_vm_retention,
        reconcile_interval=args.pool_reconcile_interval,
        control_urls=tuple(args.pool_control_url), ec2=ec2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynomesh control", description="Run the control plane: the REST API the CLI, "
        "routers and dyno managers talk to, over the state store.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"address of the API (default {DEFAULT_LISTEN}; port 0 picks one "
                             "and prints it)")
    parser.add_argument("--listen-flag", default="--listen", metavar="FLAG",
                        help="the flag to name when the API's address is taken (`dynomesh up` "
                             "passes its own, --api)")
    parser.add_argument("--database-url", default=os.environ.get("DYNOMESH_DATABASE_URL"),
                        metavar="URL", help="postgresql://user@host/db to share state between "
                        "control nodes (default $DYNOMESH_DATABASE_URL, else embedded SQLite in "
                        "the home directory)")
    parser.add_argument("--addons-database-url",
                        default=os.environ.get("DYNOMESH_ADDONS_DATABASE_URL"), metavar="URL",
                        help="postgresql://ADMIN:PASSWORD@HOST:PORT/postgres, ADMIN a superuser: "
                        "the server `addons:create postgresql` makes apps' databases on, not "
                        "the store's, with PUBLIC's CONNECT revoked on its databases (default "
                        "$DYNOMESH_ADDONS_DATABASE_URL; the environment keeps the password out "
                        "of `ps`)")
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
    parser.add_argument("--public-url", metavar="URL",
                        help="this control plane's URL as dyno managers reach it, for slug "
                             "URLs (default: the URL each dyno manager used)")
    parser.add_argument("--certificate-key-file", type=Path,
                        default=os.environ.get("DYNOMESH_CERTIFICATE_KEY_FILE"), metavar="FILE",
                        help="32 random bytes, base64, that apps' certificate private keys are "
                             "sealed with at rest; the same file on every control node, kept "
                             "and backed up like the database (make one: (umask 077; head -c "
                             "32 /dev/urandom | base64 > FILE)); default "
                             "$DYNOMESH_CERTIFICATE_KEY_FILE; without it certs:add is refused",
                        )
    acme = parser.add_argument_group("automatic certificates (ACME)")
    acme.add_argument("--acme-directory", default=os.environ.get("DYNOMESH_ACME_DIRECTORY",
                                                                 LETS_ENCRYPT), metavar="URL",
                      help="the ACME directory that certs:auto:enable obtains certificates "
                           "from (default $DYNOMESH_ACME_DIRECTORY, else Let's Encrypt's "
                           f"production directory, {LETS_ENCRYPT})")
    acme.add_argument("--acme-ca-file", default=os.environ.get("DYNOMESH_ACME_CA_FILE"),
                      metavar="FILE",
                      help="PEM bundle to trust for the ACME directory's HTTPS instead of the "
                           "system's (a private CA, or Pebble's test CA); default "
                           "$DYNOMESH_ACME_CA_FILE")
    slugs = parser.add_argument_group("slug store")
    slugs.add_argument("--slug-store", default=os.environ.get("DYNOMESH_SLUG_STORE"),
                       metavar="s3://BUCKET/PREFIX",
                       help="keep slugs in this S3 bucket, under PREFIX (default "
                            "$DYNOMESH_SLUG_STORE, else the home directory)")
    slugs.add_argument("--slug-store-endpoint", metavar="URL",
                       default=os.environ.get("AWS_ENDPOINT_URL_S3"),
                       help="an S3-compatible service's URL, e.g. http://127.0.0.1:9000 "
                            "(default $AWS_ENDPOINT_URL_S3, else AWS)")
    slugs.add_argument("--slug-store-region", metavar="REGION",
                       help="the bucket's AWS region (default $AWS_REGION, "
                            "$AWS_DEFAULT_REGION or the profile's)")
    slugs.add_argument("--slug-part-size", type=int, default=8, metavar="MIB",
                       help="slugs above this go to S3 as multipart uploads of parts this "
                            "big (default 8, at least 5)")
    fleet = parser.add_argument_group("scheduling and feeds (seconds)")
    fleet.add_argument("--agent-timeout", type=_seconds, default=15.0, metavar="S",
                       help="a dyno manager silent this long is lost and its dynos are "
                            "placed elsewhere (default 15)")
    fleet.add_argument("--startup-grace", type=_seconds, default=30.0, metavar="S",
                       help="after starting or taking over scheduling, declare no dyno "
                            "manager lost for this long (default 30)")
    fleet.add_argument("--take-out-grace", type=_seconds, default=2.0, metavar="S",
                       help="once every router has a dyno out of its table, wait this long "
                            "before stopping it (default 2)")
    fleet.add_argument("--take-out-timeout", type=_seconds, default=10.0, metavar="S",
                       help="wait at most this long for routers to be sent a take-out "
                            "(default 10)")
    fleet.add_argument("--feed-heartbeat", type=_seconds, default=5.0, metavar="S",
                       help="send feed followers a heartbeat this often when idle (default 5)")
    parser.add_argument("--affinity-key-rotation", type=_days, default=30.0, metavar="DAYS",
                        help="make a new session affinity signing key for the routers this "
                             "often; the previous one still verifies (default 30; 0: only "
                             "`dynomesh routers:keys:rotate`)")
    parser.add_argument("--tail-buffer", type=int, default=5_000, metavar="LINES",
                        help="lines a `dynomesh logs --tail` session may fall behind before it "
                             "is cut off (default 5000)")
    drains = parser.add_argument_group("log drains")
    drains.add_argument("--drain-buffer", type=int, default=10_000, metavar="LINES",
                        help="lines a drain holds while its receiver is slow or away, then "
                             "drops and counts (L10) (default 10000)")
    drains.add_argument("--drain-lease", type=_seconds, default=10.0, metavar="S",
                        help="a control node that dies loses its drains to another after "
                             "this long (default 10)")
    drains.add_argument("--drain-ca-file", type=Path, default=None, metavar="PEM",
                        help="CA certificates to trust for syslog+tls:// and https:// drains, "
                             "besides the system's (a private CA)")
    builds = parser.add_argument_group("builds (`dynomesh deploy` of a source directory)")
    builds.add_argument("--build-timeout", type=_seconds, default=DEFAULT_BUILD_TIMEOUT,
                        metavar="S", help="a build that runs longer fails (default 900, "
                        "Heroku's 15 minutes)")
    builds.add_argument("--build-max-slug-size", type=int,
                        default=DEFAULT_BUILD_SLUG_BYTES // 2**20, metavar="MB",
                        help="a build whose compressed slug is larger fails (default 500)")
    builds.add_argument("--build-pip-index-url", metavar="URL",
                        default=os.environ.get("DYNOMESH_BUILD_PIP_INDEX_URL") or None,
                        help="the package index builds' pip uses (default: PyPI; or "
                             "$DYNOMESH_BUILD_PIP_INDEX_URL)")
    builds.add_argument("--build-find-links", metavar="DIR|URL", action="append",
                        default=None,
                        help="a wheel directory or page for builds' pip; without "
                             "--build-pip-index-url, the only place pip looks (repeatable; "
                             "default $DYNOMESH_BUILD_FIND_LINKS, space-separated)")
    builds.add_argument("--builds-dir", type=Path, default=None, metavar="DIR",
                        help="where builds work and keep each app's cache (default HOME/builds, "
                             "or /var/lib/dynomesh/builds as root when others cannot enter HOME)")
    _pool_arguments(parser)
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
            change_history=args.change_history, agent_timeout=args.agent_timeout,
            startup_grace=args.startup_grace, take_out_grace=args.take_out_grace,
            take_out_timeout=args.take_out_timeout, feed_heartbeat=args.feed_heartbeat,
            affinity_key_rotation=args.affinity_key_rotation * 86400,
            public_url=args.public_url, tail_buffer=args.tail_buffer,
            addons_database_url=args.addons_database_url,
            drain_buffer=args.drain_buffer, drain_lease=args.drain_lease,
            drain_ca_file=args.drain_ca_file, slug_store=args.slug_store or None,
            slug_store_endpoint=args.slug_store_endpoint or None,
            slug_store_region=args.slug_store_region, slug_part_size=args.slug_part_size * 2**20,
            build_timeout=args.build_timeout,
            build_max_slug_bytes=args.build_max_slug_size * 2**20,
            build_pip=PipOptions(args.build_pip_index_url, tuple(
                args.build_find_links if args.build_find_links is not None
                else os.environ.get("DYNOMESH_BUILD_FIND_LINKS", "").split())),
            builds_dir=args.builds_dir, pool=pool_config(args),
            certificate_key_file=args.certificate_key_file,
            acme=AcmeSettings(directory_url=args.acme_directory, ca_file=args.acme_ca_file))
        ready = Readiness.from_environ()
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from controlplane.server import serve
    try:
        import uvloop
        if not uvloop.run(serve(config, ready=ready)):
            print("dynomesh control: stopped after an internal failure (see the log above); "
                  "restart it", file=sys.stderr)
            return 1
    except OSError as exc:
        print(f"dynomesh control: cannot listen on {args.listen}: {exc.strerror or exc} "
              f"(is another control plane running? pick another port with {args.listen_flag})",
              file=sys.stderr)
        return 1
    except errors.StoreError as exc:
        print(f"dynomesh control: the store failed: {exc}", file=sys.stderr)
        return 1
    except SlugStoreError as exc:
        print(f"dynomesh control: the slug store cannot be used: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
