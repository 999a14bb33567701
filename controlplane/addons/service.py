"""Creating and destroying add-ons: the provider's work between the store's steps.

create:  provider reachable and safe? -> hold (app, kind) -> store: `provisioning` ->
         provider: make it -> store: set the config var (a new release), `ready`
destroy: provider reachable? -> hold (app, kind) -> store: unset the config var (a new
         release), `deprovisioning` -> provider: remove it -> store: forget it

Nothing is recorded while the provider's server cannot be reached. A crash (or a failure) after
a store step leaves a row in `provisioning` or `deprovisioning`; the same command run again
picks it up (a `provisioning` add-on is finished by `addons:create`, and either state by
`addons:destroy`), and the provider's steps are idempotent. A create that fails at the
provider is undone there and forgotten when the server lets us; otherwise its row stays, for
either command to finish.

Both sagas run while holding the app's add-on of that kind (`provider.exclusive`, a lock on the
provider's server that any control node sees), so a second request cannot take over a create
still under way or drop what it is making: it gets `Busy` (409, "run it again") at once. Every
store step reads the row afresh inside the hold, so it acts on what the last holder left.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

from controlplane.addons import errors, naming
from controlplane.addons.provider import AddonProvider
from controlplane.addons.registry import AddonRegistry
from controlplane.store import Store
from controlplane.store.models import Addon, Release

log = logging.getLogger(__name__)


def hold_key(app_id: str, kind: str) -> str:
    """What a create or destroy holds: the app's add-on of `kind` (one per app and kind), so
    the hold is taken before the store says which add-on that is."""
    return f"{app_id}:{kind}"


def _require_here(provider: AddonProvider, addon: Addon) -> None:
    """Work on an add-on only on the server it lives on: a control plane given another one
    (a changed --addons-database-url) would make a second database, or report one dropped that
    still exists where it was."""
    if addon.location is not None and addon.location != provider.location():
        raise errors.Elsewhere(
            f"{addon.name} lives on the add-on server at {addon.location}, but the control "
            f"plane's --addons-database-url now points at {provider.location()}: point it back "
            f"at {addon.location} to finish or destroy {addon.name} (its {addon.resource} is "
            "there)")


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
        """Where the add-on's resource lives: as recorded, else (a row older than the record)
        its kind's server now; None when neither is known."""
        if addon.location is not None:
            return addon.location
        try:
            return self.registry.provider(addon.kind).location()
        except errors.AddonError:
            return None

    async def create(self, app_name: str, kind_text: str) -> Changed:
        provider = self.registry.provider(kind_text)
        app = await self.store.apps.get(app_name)
        await provider.check_safe()
        async with self._held(provider, app.id, app.name, provider.kind):
            planned = naming.derive(provider.kind, app.name, self._rng)
            addon, resumed = await self.store.addons.begin_create(
                app.id, kind=provider.kind, name=planned.name, resource=planned.resource,
                config_var=provider.config_var, location=provider.location())
            _require_here(provider, addon)
            try:
                value = await provider.provision(addon.resource, fresh=not resumed)
            except errors.ResourceExists:
                await self.store.addons.forget_unmade(addon.id)  # nothing of it was made
                raise
            except errors.AddonError:
                if not resumed:
                    await self._undo(provider, addon)
                raise
            addon, release = await self.store.addons.attach(addon.id, value)
        return Changed(addon, release, resumed)

    async def _undo(self, provider: AddonProvider, addon: Addon) -> None:
        try:
            await provider.deprovision(addon.resource)
        except errors.AddonError as exc:
            # the row stays `provisioning`: create again finishes it, destroy ends it
            log.warning("addons: could not undo the failed create of %s (%s): %s",
                        addon.name, addon.resource, exc)
            return
        await self.store.addons.forget_unmade(addon.id)

    async def destroy(self, app_name: str, name: str) -> Changed:
        addon = await self.store.addons.get(app_name, name)
        provider = self.registry.provider(addon.kind)
        _require_here(provider, addon)
        await provider.check()
        async with self._held(provider, addon.app_id, addon.app_name, addon.kind):
            addon, release = await self.store.addons.begin_destroy(addon.app_id, addon.name)
            await provider.deprovision(addon.resource)
            await self.store.addons.finish_destroy(addon.id)
        return Changed(addon, release)

    async def destroy_all(self, app_name: str) -> list[Changed]:
        """Destroy every add-on of the app (before the app itself goes)."""
        return [await self.destroy(app_name, addon.name)
                for addon in await self.store.addons.list(app_name)]

    @staticmethod
    @contextlib.asynccontextmanager
    async def _held(provider: AddonProvider, app_id: str, app_name: str,
                    kind: str) -> AsyncIterator[None]:
        entered = False
        try:
            async with provider.exclusive(hold_key(app_id, kind)):
                entered = True
                yield
        except errors.Busy:
            if entered:
                raise
            raise errors.Busy(f"{app_name}'s {kind} add-on is being created or destroyed by "
                              "another request: run the command again in a moment") from None
