"""`dynomesh dynomgr`: build the configuration from the command line and run the agent."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dynomesh.ready import Readiness

from dynomgr.config import AgentConfig, CyclingConfig
from dynomgr.markers import MarkerMode

DESCRIPTION = """\
Run the dyno manager: the agent that runs this VM's dynos. It starts the dynos the control
plane assigns to this VM (--control) or that a file lists (--assignments), restarts them when
they crash, stops them when they are removed, reports every state change, and prints state
changes and output in Heroku's log format on stdout.
"""

EPILOG = """\
example:
  # following the control plane (the VM id comes from the token):
  dynomesh tokens:create --role dynomgr --vm-id vm-1 > dynomgr.token
  dynomesh dynomgr --control http://10.0.0.2:5050,http://10.0.0.3:5050 --token-file dynomgr.token \\
      --address 10.0.1.7 --capacity-mb 8192

  # standalone, from a file:
  dynomesh dynomgr --assignments assignments.json --data-dir /var/lib/dynomesh/dynomgr
  kill -HUP $(pgrep -f 'dynomesh dynomgr')   # re-read the file: start, stop, restart what changed
  curl -s http://127.0.0.1:5051/dynos          # what runs, as JSON; /metrics for Prometheus

assignments.json (docs/assignments-format.md):
  {"dynos": [{"kind": "formation", "name": "web.1", "app": "hello", "type": "web",
              "release": 7, "slug": {"url": "file:///srv/slugs/hello-v7.tgz", "sha256": "…"},
              "env": {"GREETING": "hi"}, "memory_mb": 512, "health_check": null}]}

SIGTERM or Ctrl-C stops every dyno (SIGTERM, then SIGKILL after --stop-timeout) and exits 0
(SIGTERM with --keep-dynos: see below).

upgrading the agent without restarting apps:
  SIGUSR2 (or SIGTERM when started with --keep-dynos) exits leaving every running dyno running;
  the next `dynomesh dynomgr` on the same --data-dir adopts them: same pids, same ports, their
  output and memory watched again, reported `up` without a restart. Ctrl-C (SIGINT) always
  stops the dynos. Under systemd, give the unit KillMode=process (else systemd kills the dynos
  when the agent exits) and keep SIGTERM a drain, so that `systemctl stop` stops the dynos:
    dynomesh dynomgr --control URL --token-file FILE                 # in the unit
    systemctl kill --kill-whom=main -s USR2 dynomesh-dynomgr && systemctl start dynomesh-dynomgr
                                                                     # upgrade: no app restarts
    kill -USR2 $PID; tail --pid=$PID -f /dev/null; dynomesh dynomgr …  # by hand: the new
                                      # agent starts once the old one has let go of --data-dir
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    return value


def _host_port(text: str) -> tuple[str, int] | None:
    if text in ("off", "none", ""):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (or off), got {text!r}")
    return (host.strip("[]") or "127.0.0.1", int(port))


def default_data_dir(environ: dict[str, str]) -> Path:
    if environ.get("DYNOMESH_HOME"):
        return Path(environ["DYNOMESH_HOME"]) / "dynomgr"
    if os.geteuid() == 0:
        # Dyno users must be able to enter it, which /root (mode 0700) does not allow.
        return Path("/var/lib/dynomesh/dynomgr")
    return Path.home() / ".dynomesh" / "dynomgr"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynomesh dynomgr",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--control", metavar="URL[,URL]",
                        help="follow the assignment feed of these control planes (tried in turn) and report to them")  # fmt: skip
    source.add_argument("--assignments", metavar="FILE", type=Path,
                        help="JSON file of the dynos to run; re-read on SIGHUP")  # fmt: skip
    parser.add_argument("--token-file", metavar="FILE", type=Path,
                        help="with --control: file holding this VM's dynomgr token")  # fmt: skip
    parser.add_argument("--no-log-ship", action="store_true",
                        help="with --control: keep dyno output and platform lines out of the control plane's log stream (`dynomesh logs`); stdout only")  # fmt: skip
    parser.add_argument("--log-ship-buffer", metavar="BYTES", type=int, default=8 * 1024 * 1024,
                        help="with --control: log lines held while the control plane is slow or away, before they are dropped and counted (default 8388608)")  # fmt: skip
    parser.add_argument("--heartbeat-interval", metavar="S", type=_seconds,
                        help="with --control: heart-beat this often (default 5; keep it a third of the control plane's --agent-timeout, after which a silent VM is lost)")  # fmt: skip
    parser.add_argument("--capacity-mb", metavar="MB", type=int,
                        help="with --control: memory offered to dynos (default: this machine's total memory)")  # fmt: skip
    parser.add_argument("--data-dir", metavar="DIR", type=Path,
                        help="slug cache, dyno directories and pid records "
                             "(default $DYNOMESH_HOME/dynomgr, or /var/lib/dynomesh/dynomgr as root)")  # fmt: skip
    parser.add_argument("--admin", metavar="HOST:PORT", type=_host_port, default=("127.0.0.1", 5051),
                        help="admin endpoints /healthz, /metrics, /dynos (default 127.0.0.1:5051; off to disable)")  # fmt: skip
    parser.add_argument("--keep-dynos", action="store_true",
                        help="on SIGTERM, exit leaving the dynos running for the next dyno manager on this --data-dir (an upgrade); SIGUSR2 does this without the flag, Ctrl-C never")  # fmt: skip
    parser.add_argument("--address", "--host", dest="host", metavar="ADDR", default="127.0.0.1",
                        help="where routers reach this VM's dynos: the host part of their reported addresses (default 127.0.0.1)")  # fmt: skip
    parser.add_argument("--port-range", metavar="FIRST-LAST", default="20000-29999",
                        help="ports handed to web dynos as $PORT (default 20000-29999)")  # fmt: skip

    times = parser.add_argument_group("timeouts (Heroku's defaults)")
    times.add_argument("--boot-timeout", metavar="S", type=_seconds, default=60.0,
                       help="a web dyno must accept on $PORT within this (R10; default 60)")  # fmt: skip
    times.add_argument("--stop-timeout", metavar="S", type=_seconds, default=30.0,
                       help="SIGKILL this long after SIGTERM (R12; default 30)")  # fmt: skip

    memory = parser.add_argument_group("memory")
    memory.add_argument("--memory-interval", metavar="S", type=_seconds, default=5.0,
                        help="how often dyno memory is sampled (default 5)")  # fmt: skip
    memory.add_argument("--memory-kill-ratio", metavar="X", type=float, default=2.0,
                        help="kill a dyno above X times its quota (R15; default 2)")  # fmt: skip

    restart = parser.add_argument_group("crash restarts (first at once, then exponential back-off)")
    restart.add_argument("--restart-base", metavar="S", type=_seconds, default=1.0,
                         help="delay before the second restart (default 1)")  # fmt: skip
    restart.add_argument("--restart-cap", metavar="S", type=_seconds, default=60.0,
                         help="longest delay between restarts (default 60)")  # fmt: skip
    restart.add_argument("--restart-jitter", metavar="F", type=float, default=0.25,
                         help="shave up to this fraction off each delay at random (default 0.25)")  # fmt: skip
    restart.add_argument("--restart-healthy-after", metavar="S", type=_seconds, default=300.0,
                         help="a run this long resets the back-off (default 300)")  # fmt: skip

    cycling = parser.add_argument_group("daily cycling")
    cycling.add_argument("--cycle-after", metavar="S", type=_seconds, default=86400.0,
                         help="restart each dyno after this long (default 86400, 24 h)")  # fmt: skip
    cycling.add_argument("--cycle-jitter", metavar="S", type=_seconds, default=12960.0,
                         help="plus up to this much at random (default 12960, 216 min)")  # fmt: skip
    cycling.add_argument("--no-cycling", action="store_true", help="never cycle dynos")

    tuning = parser.add_argument_group("tuning")
    tuning.add_argument("--marker", choices=[m.value for m in MarkerMode], default="auto",
                        help="how escaped processes are found: cgroup v2, /proc environ, or auto")  # fmt: skip
    tuning.add_argument("--readiness-interval", metavar="S", type=_seconds, default=0.005,
                        help="how often booting web dynos' ports are checked (default 0.005)")  # fmt: skip
    health = parser.add_argument_group("health checks of running web dynos (an app's "
                                       "`config:router` may set its own)")
    health.add_argument("--health-check-every", metavar="S", type=_seconds, default=10.0,
                        help="seconds between checks of each web dyno whose app has a health "
                             "check path (default 10)")
    health.add_argument("--health-check-failures", metavar="N", type=int, default=3,
                        help="failed checks in a row that take a dyno out of the routers' "
                             "tables until one passes (default 3)")
    health.add_argument("--health-check-timeout", metavar="S", type=_seconds, default=5.0,
                        help="for a check to answer, at most the interval (default 5)")
    tuning.add_argument("--log-buffer", metavar="BYTES", type=int, default=4 * 1024 * 1024,
                        help="output held for a slow stdout reader before lines are dropped")  # fmt: skip
    return parser


def build_config(args: argparse.Namespace, environ: dict[str, str]) -> AgentConfig:
    from dynomgr.ports import PortRange
    from dynomgr.restart import RestartConfig

    return AgentConfig(
        data_dir=args.data_dir or default_data_dir(environ),
        admin=args.admin,
        advertise_host=args.host,
        boot_timeout=args.boot_timeout,
        stop_timeout=args.stop_timeout,
        memory_interval=args.memory_interval,
        memory_kill_ratio=args.memory_kill_ratio,
        cycling=None if args.no_cycling else CyclingConfig(args.cycle_after, args.cycle_jitter),
        restart=RestartConfig(
            base=args.restart_base,
            cap=args.restart_cap,
            jitter=args.restart_jitter,
            healthy_after=args.restart_healthy_after,
        ),
        ports=PortRange.parse(args.port_range),
        marker=MarkerMode(args.marker),
        readiness_interval=args.readiness_interval,
        health_check_every=args.health_check_every,
        health_check_failures=args.health_check_failures,
        health_check_timeout=args.health_check_timeout,
        log_buffer_bytes=args.log_buffer,
        keep_dynos=args.keep_dynos,
    )


def machine_memory_mb() -> int:
    """MemTotal from /proc/meminfo, in MB (1024 if it cannot be read)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return max(1, int(line.split()[1]) // 1024)
    except (OSError, ValueError, IndexError):
        pass  # not Linux, or an unexpected format: fall back below
    return 1024


def build_follow(args: argparse.Namespace):
    """--control, --token-file, --capacity-mb -> a FollowConfig (None with --assignments)."""
    if args.control is None:
        for flag, value in (("--token-file", args.token_file), ("--capacity-mb", args.capacity_mb),
                            ("--no-log-ship", args.no_log_ship or None),
                            ("--heartbeat-interval", args.heartbeat_interval)):
            if value is not None:
                raise ValueError(f"{flag} goes with --control")
        return None
    from dynomesh.feedclient import parse_control_urls, read_token_file

    from dynomgr.feed import FollowConfig

    if args.token_file is None:
        raise ValueError("--control needs --token-file FILE holding this VM's dynomgr token "
                         "(dynomesh tokens:create --role dynomgr --vm-id ID > FILE)")
    return FollowConfig(
        urls=parse_control_urls(args.control),
        token=read_token_file(args.token_file),
        capacity_mb=args.capacity_mb if args.capacity_mb is not None else machine_memory_mb(),
        logs=None if args.no_log_ship else _ship_settings(args.log_ship_buffer),
        report=_report_settings(args.heartbeat_interval),
    )


def _report_settings(heartbeat_interval: float | None):
    from dynomgr.controlreporter import ReportSettings

    if heartbeat_interval is None:
        return ReportSettings()
    try:
        return ReportSettings(heartbeat_interval=heartbeat_interval)
    except ValueError as exc:
        raise ValueError(f"--heartbeat-interval: {exc}") from None


def _ship_settings(buffer_bytes: int):
    from dynomesh.logship import ShipSettings

    try:
        return ShipSettings(buffer_bytes=buffer_bytes)
    except ValueError as exc:
        raise ValueError(f"--log-ship-buffer: {exc}") from None


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    try:
        config = build_config(args, environ)
        follow = build_follow(args)
        ready = Readiness.from_environ(environ)
    except ValueError as exc:
        parser.error(str(exc))
    import uvloop  # one event loop for every dyno; uvloop's child watcher needs no threads

    from dynomgr.runtime import run_agent

    try:
        return uvloop.run(run_agent(config, assignments=args.assignments, follow=follow,
                                    ready=ready))
    except KeyboardInterrupt:  # a second Ctrl-C while draining
        print("dynomesh dynomgr: interrupted while stopping dynos", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
