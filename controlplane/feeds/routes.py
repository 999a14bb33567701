"""Route entries: what routers are told about an app (docs/feeds.md, docs/routes-format.md).

Pure: `route_entry(facts)` turns what the store knows about one app into the entry routers
apply, so the rules below are unit-tested without a database.

- `hosts`: `<app>.<base domain>` first, then the custom domains (wildcards included).
- `state`, first match wins:
  `blank` with no release that has code (H81); `scaled_to_zero` when the web formation is 0
  (H14); `running` when a web dyno is routable; `scaled_to_zero` too when web dynos exist but
  none could be placed on a VM (no room: "no web dynos running" is the truth, and better
  than a request queue that ends in H20); `crashed` when every serving web dyno crashed (H10);
  else `booting`: requests queue at the router until a dyno is up.
- `dynos`: the routable web dynos (serving, reported up with an address, not being taken
  out), by number. Preboot dynos are not serving until the switch.
- `session_affinity`: true when the app has the `http-session-affinity` feature (else absent).
"""

from __future__ import annotations

from typing import Any

from controlplane.store.models import ObservedState, RouteFacts

__all__ = ["RouteFacts", "app_state", "route_entry"]


def app_state(facts: RouteFacts) -> str:
    if not facts.has_release:
        return "blank"
    if facts.web_quantity == 0:
        return "scaled_to_zero"
    if any(d.routable for d in facts.web_dynos):
        return "running"
    serving = [d for d in facts.web_dynos if d.serving and d.take_out is None]
    if serving and all(d.vm_id is None for d in serving):
        return "scaled_to_zero"
    if serving and all(d.state is ObservedState.CRASHED for d in serving):
        return "crashed"
    return "booting"


def route_entry(facts: RouteFacts) -> dict[str, Any]:
    routable = sorted((d for d in facts.web_dynos if d.routable), key=lambda d: d.number)
    entry = {"name": facts.name, "hosts": list(facts.hosts), "maintenance": facts.maintenance,
             "state": app_state(facts),
             "dynos": [{"name": d.name, "address": d.address} for d in routable]}
    if facts.session_affinity:  # only when on: absent means off to every router
        entry["session_affinity"] = True
    return entry
