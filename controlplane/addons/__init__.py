"""Add-ons: resources a provider makes for an app (a PostgreSQL database), attached to it as a
config var (`DATABASE_URL`), as Heroku's add-ons are.

`provider.py` is the interface a kind implements, `registry.py` the kinds and the configured
providers, `postgres.py` the one that ships, `service.py` create and destroy around the store's
steps, `naming.py`, `urls.py` and `scram.py` the pure parts (names, URLs, password verifiers).
Errors: `errors.py`.

Nothing is imported here: `controlplane.config` and every CLI command import `urls`, and must
not pull in the service and the store with it.
"""
