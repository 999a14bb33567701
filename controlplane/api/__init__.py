"""The control plane's REST API (aiohttp), shaped after Heroku's Platform API; see docs/api.md."""

from __future__ import annotations

from aiohttp import web

from controlplane.api import (addons, apps, builds, certs, drains, dynos, feeds, logs, oneoffs,
                              pool, releases, routers, routersettings, tokens, vms)
from controlplane.api.auth import auth_middleware
from controlplane.api.bodies import MAX_REPORT_BYTES
from controlplane.api.context import CONTEXT, ApiContext
from controlplane.api.errors import error_middleware

__all__ = ["make_app", "ApiContext"]

_APP = "/apps/{app}"


def make_app(context: ApiContext) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(context.store)],
        # Each endpoint holds its body to its own limit (bodies.read_limited); this is the
        # largest of them, for dyno managers' reports.
        client_max_size=max(context.config.max_body_bytes, MAX_REPORT_BYTES))
    app[CONTEXT] = context
    app.router.add_routes([
        web.get("/healthz", tokens.healthz),
        web.get("/account", tokens.whoami),
        web.get("/tokens", tokens.list_tokens),
        web.post("/tokens", tokens.create_token),
        web.delete("/tokens/{token}", tokens.revoke_token),
        web.get("/apps", apps.list_apps),
        web.post("/apps", apps.create_app),
        web.get(_APP, apps.get_app),
        web.patch(_APP, apps.update_app),
        web.delete(_APP, apps.delete_app),
        web.get(_APP + "/domains", apps.list_domains),
        web.post(_APP + "/domains", apps.add_domain),
        web.delete(_APP + "/domains/{hostname}", apps.remove_domain),
        web.get(_APP + "/certs", certs.list_certs),
        web.post(_APP + "/certs", certs.add_cert),
        web.delete(_APP + "/certs/{cert}", certs.remove_cert),
        web.get(_APP + "/acm", certs.acm_status),
        web.post(_APP + "/acm", certs.enable_acm),
        web.delete(_APP + "/acm", certs.disable_acm),
        web.get(_APP + "/features", apps.list_features),
        web.get(_APP + "/features/{feature}", apps.get_feature),
        web.patch(_APP + "/features/{feature}", apps.update_feature),
        web.get(_APP + "/router-settings", routersettings.get_router_settings),
        web.patch(_APP + "/router-settings", routersettings.update_router_settings),
        web.get(_APP + "/config-vars", releases.get_config),
        web.patch(_APP + "/config-vars", releases.update_config),
        web.post(_APP + "/slugs", releases.upload_slug),
        web.get(_APP + "/slugs/{slug}", releases.get_slug),
        web.post(_APP + "/builds", builds.create_build),
        web.get(_APP + "/builds", builds.list_builds),
        web.get(_APP + "/builds/{build}", builds.get_build),
        web.get(_APP + "/builds/{build}/output", builds.build_output),
        web.get(_APP + "/releases", releases.list_releases),
        web.post(_APP + "/releases", releases.create_release),
        web.get(_APP + "/releases/{release}", releases.get_release),
        web.get(_APP + "/formation", releases.list_formation),
        web.patch(_APP + "/formation", releases.batch_update_formation),
        web.get(_APP + "/formation/{type}", releases.get_formation),
        web.patch(_APP + "/formation/{type}", releases.update_formation),
        web.get(_APP + "/addons", addons.list_addons),
        web.post(_APP + "/addons", addons.create_addon),
        web.get(_APP + "/addons/{addon}", addons.get_addon),
        web.delete(_APP + "/addons/{addon}", addons.destroy_addon),
        web.get(_APP + "/dynos", dynos.list_dynos),
        web.post(_APP + "/dynos", oneoffs.create_one_off),
        web.get(_APP + "/dynos/{dyno}/attach", oneoffs.attach_caller),
        web.get("/vms/{vm}/dynos/{dyno}/attach", oneoffs.attach_dyno),
        web.delete(_APP + "/dynos", dynos.restart_all),
        web.get(_APP + "/dynos/{dyno}", dynos.get_dyno),
        web.delete(_APP + "/dynos/{dyno}", dynos.restart_dyno),
        web.post(_APP + "/dynos/{dyno}/actions/stop", dynos.stop_dyno),
        web.get(_APP + "/log", logs.app_log),
        web.get(_APP + "/drains", drains.list_drains),
        web.post(_APP + "/drains", drains.add_drain),
        web.delete(_APP + "/drains/{drain}", drains.remove_drain),
        web.get("/metrics", drains.metrics),
        web.post("/logs", logs.ingest),
        web.get("/routers/keys", routers.list_keys),
        web.post("/routers/keys/rotate", routers.rotate_keys),
        web.get("/status", vms.status),
        web.get("/vms", vms.list_vms),
        web.get("/vms/{vm}", vms.get_vm),
        web.delete("/vms/{vm}", pool.remove_vm),
        web.get("/pool", pool.get_pool),
        web.patch("/pool", pool.scale_pool),
        web.put("/vms/{vm}", vms.register_vm),
        web.post("/vms/{vm}/heartbeat", vms.heartbeat),
        web.post("/vms/{vm}/states", vms.report_states),
        web.get("/feeds/routes", feeds.route_feed),
        web.get("/feeds/assignments", feeds.assignment_feed),
        web.get("/slugs/{slug}/download", feeds.download_slug),
    ])
    return app
