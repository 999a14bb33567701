"""Which host names a TLS certificate serves: shared by the router (which certificate a
handshake gets) and the control plane (whether an uploaded certificate fits an app).

A certificate's DNS names (subjectAltName) cover a host when one equals it or is the wildcard
of its parent domain; a wildcard matches exactly one label (RFC 6125 §6.4.3: `*.example.com`
covers `www.example.com`, not `example.com` nor `a.b.example.com`). A wildcard *host*
(`*.example.com`, as an app's domain) is covered by that same wildcard name only: one exact
name does not serve every name under it.
"""

from __future__ import annotations

from collections.abc import Iterable


def covers(names: Iterable[str], host: str) -> bool:
    """Whether a certificate with these DNS names (lower case) serves `host`."""
    names = set(names)
    if host in names:
        return True
    if host.startswith("*."):
        return False
    parent = host.partition(".")[2]
    return bool(parent) and "*." + parent in names
