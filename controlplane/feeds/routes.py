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
- `dynos`: the routable web dynos (serving, reported up with an address, not unhealthy, not
  being taken out), by number. Preboot dynos are not serving until the switch. When every
  serving web dyno is unhealthy the app is `booting`: requests wait for one to pass again.
- `request_timeout`, `max_body_bytes`: the app's own router settings (`config:router`), only
  when set; absent, each router's flag decides.
- `certificates`: only for an app that has some: chain and private key (opened by `unseal`,
  the feed hub's; one it cannot open is left out), oldest first.
- `acme_challenges`: only while an ACME HTTP-01 challenge for one of its domains is being
  validated (controlplane/acme/): token and key authorization, which routers answer.
- `session_affinity`: true when the app has the `http-session-affinity` feature (else absent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controlplane.store.models import ObservedState, RouteFacts, SealedCertificate

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


def route_entry(facts: RouteFacts,
                unseal: Callable[[SealedCertificate], str | None] | None = None
                ) -> dict[str, Any]:
    routable = sorted((d for d in facts.web_dynos if d.routable), key=lambda d: d.number)
    entry = {"name": facts.name, "hosts": list(facts.hosts), "maintenance": facts.maintenance,
             "state": app_state(facts),
             "dynos": [{"name": d.name, "address": d.address} for d in routable]}
    if facts.certificates and unseal is not None:
        opened = [(c.chain, unseal(c)) for c in facts.certificates]
        entry["certificates"] = [{"chain": chain, "key": key} for chain, key in opened
                                 if key is not None]
    if facts.acme_challenges:
        entry["acme_challenges"] = [{"token": token, "key_authorization": answer}
                                    for token, answer in facts.acme_challenges]
    if facts.request_timeout is not None:
        entry["request_timeout"] = facts.request_timeout
    if facts.max_body_bytes is not None:
        entry["max_body_bytes"] = facts.max_body_bytes
    if facts.session_affinity:  # only when on: absent means off to every router
        entry["session_affinity"] = True
    return entry
