"""Add-ons: resources a provider makes for an app (a PostgreSQL database), attached to it as a
config var (`DATABASE_URL`), as Heroku's add-ons are.

`provider.py` is the interface a kind implements, `registry.py` the kinds and the configured
providers, `postgres.py` the one that ships, `service.py` create and destroy around the store's
steps, `naming.py` and `urls.py` the pure parts (names, URLs). Errors: `errors.py`.
"""

from controlplane.addons.errors import AddonError
from controlplane.addons.registry import AddonRegistry, build_registry
from controlplane.addons.service import AddonService, Changed

__all__ = ["AddonError", "AddonRegistry", "AddonService", "Changed", "build_registry"]
