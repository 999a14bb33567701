"""TLS certificates of apps: checked on upload, private keys sealed at rest, carried to routers
in the route feed (docs/routes-format.md, "Certificates")."""
