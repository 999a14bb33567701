"""config:router: an app's router settings (request timeout, body limit, health check)."""

from __future__ import annotations

from controlplane.cli.commands.apps import app_path
from controlplane.cli.errors import usage
from controlplane.cli.output import emit_json, table
from controlplane.cli.registry import command, runs
from controlplane.routersettings import (BODY_RANGE, FAILURES_RANGE, HEALTH_FIELDS, INTERVAL_RANGE,
                                         TIMEOUT_RANGE, InvalidSetting, from_flag,
                                         settings_lines)

# flag -> (setting, what it means, with its default when unset)
FLAGS = {
    "--request-timeout": ("request_timeout", "seconds to the first response byte before H12 "
                          f"({TIMEOUT_RANGE[0]}-{TIMEOUT_RANGE[1]}; default: the router's "
                          "--request-timeout, 30 s)"),
    "--max-body-size": ("max_body_bytes", "largest request body; a larger one gets 413 and "
                        "H25 (e.g. 10MB, 512KB; K, M, G are powers of 1024; up to "
                        f"{BODY_RANGE[1] // 1024 ** 3} GB; default: the router's "
                        "--max-body-size, unlimited)"),
    "--health-check-path": ("health_check_path", "a path each running web dyno must answer "
                            "with 2xx or 3xx (e.g. /health); also its boot check"),
    "--health-check-interval": ("health_check_interval", "seconds between checks "
                                f"({INTERVAL_RANGE[0]}-{INTERVAL_RANGE[1]}; default: the dyno "
                                "manager's --health-check-every)"),
    "--health-check-failures": ("health_check_failures", "failed checks in a row that take a "
                                "dyno out of the routers' tables until one passes "
                                f"({FAILURES_RANGE[0]}-{FAILURES_RANGE[1]}; default: the dyno "
                                "manager's --health-check-failures)"),
}


@command("config:router", "show or change an app's router settings: request timeout, "
         "maximum body size, health check",
         example="dynomesh config:router --app hello\n"
                 "dynomesh config:router --request-timeout 120 --max-body-size 10MB --app hello\n"
                 "dynomesh config:router --health-check-path /health --health-check-failures 3 "
                 "--app hello\n"
                 "dynomesh config:router --request-timeout default --app hello   # back to the "
                 "router's", json=True)
def config_router(parser):
    for flag, (_, text) in FLAGS.items():
        parser.add_argument(flag, metavar="VALUE", help=text + "; `default` unsets it")


@runs(config_router)
async def _(args, session):
    name = session.app()
    changes = {}
    for flag, (setting, _) in FLAGS.items():
        text = getattr(args, flag[2:].replace("-", "_"))
        if text is None:
            continue
        try:
            changes[setting] = from_flag(setting, text)
        except InvalidSetting as exc:
            raise usage(f"{flag} {text}: {exc} (`{flag} default` unsets it)") from None
    path = app_path(name) + "/router-settings"
    if changes:
        settings, _ = await session.api.call("PATCH", path, json_body=changes)
    else:
        settings = await session.api.get(path)
    if args.json:
        return emit_json(settings)
    if changes:
        print(f"Router settings of {name} changed; routers and dyno managers follow within "
              "moments" + (" (web dynos restart for a new health check)"
                           if changes.keys() & set(HEALTH_FIELDS) else ""))
    table(["SETTING", "VALUE"], [list(line) for line in settings_lines(settings)])
