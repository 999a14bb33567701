"""Creating and destroying add-ons: the provider's work between the store's steps.

create:  provider reachable? -> store: `provisioning` -> provider: make it -> store: set the
         config var (a new release), `ready`
destroy: provider reachable? -> store: unset the config var (a new release), `deprovisioning`
         -> provider: remove it -> store: forget it

Nothing is recorded while the provider's server cannot be reached. A crash (or a failure) after
a store step leaves a row in `provisioning` or `deprovisioning`; the same command run again
picks it up (a `provisioning` add-on is finished by `addons:create`, and either state by
`addons:destroy`), and the provider's steps are idempotent. A create that fails at the
provider is undone there and forgotten when the server lets us; otherwise its row stays, for
either command to finish.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from controlplane.addons import errors, naming
from controlplane.addons.provider import AddonProvider
from controlplane.addons.registry import AddonRegistry
from controlplane.store import Store
from controlplane.store.models import Addon, Release


@dataclass(frozen=True)
class Changed:
    addon: Addon
    release: Release | None  # the release its config var change made, if any
    resumed: bool = False     # a create finished what an earlier, interrupted one began


class AddonService:
    def __init__(self, store: Store, registry: AddonRegistry,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.registry = registry
        self._rng = rng or random.SystemRandom()

    def location(self, addon: Addon) -> str | None:
        """Where the add-on's resource lives (None when its kind is not configured now)."""
        try:
            return self.registry.provider(addon.kind).location()
        except errors.AddonError:
            return None

    async def create(self, app_name: str, kind_text: str) -> Changed:
        provider = self.registry.provider(kind_text)
        app = await self.store.apps.get(app_name)
        await provider.check()
        planned = naming.derive(provider.kind, app.name, self._rng)
        addon, resumed = await self.store.addons.begin_create(
            app.id, kind=provider.kind, name=planned.name, resource=planned.resource,
            config_var=provider.config_var)
        try:
            value = await provider.provision(addon.resource)
        except errors.AddonError:
            if not resumed:
                await self._undo(provider, addon)
            raise
        addon, release = await self.store.addons.attach(addon.id, value)
        return Changed(addon, release, resumed)

    async def _undo(self, provider: AddonProvider, addon: Addon) -> None:
        try:
            await provider.deprovision(addon.resource)
        except errors.AddonError:
            return  # the row stays `provisioning`: create again finishes it, destroy ends it
        await self.store.addons.forget_unmade(addon.id)

    async def destroy(self, app_name: str, name: str) -> Changed:
        addon = await self.store.addons.get(app_name, name)
        provider = self.registry.provider(addon.kind)
        await provider.check()
        addon, release = await self.store.addons.begin_destroy(addon.app_id, addon.name)
        await provider.deprovision(addon.resource)
        await self.store.addons.finish_destroy(addon.id)
        return Changed(addon, release)

    async def destroy_all(self, app_name: str) -> list[Changed]:
        """Destroy every add-on of the app (before the app itself goes)."""
        return [await self.destroy(app_name, addon.name)
                for addon in await self.store.addons.list(app_name)]
