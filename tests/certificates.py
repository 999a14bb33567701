"""Certificates for tests, from a throwaway CA (trustme): PEM text as routes and the API take."""

from __future__ import annotations

import datetime

import trustme


def issue(ca: trustme.CA, *names: str, days: int = 90,
          key_type: trustme.KeyType = trustme.KeyType.ECDSA,
          now: datetime.datetime | None = None) -> dict[str, str]:
    """A leaf for `names`, valid from a day before `now` for `days` days:
    {"chain": PEM (leaf first, then intermediates), "key": PEM}."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    leaf = ca.issue_cert(*names, key_type=key_type, not_before=now - datetime.timedelta(days=1),
                         not_after=now + datetime.timedelta(days=days))
    return {"chain": "".join(blob.bytes().decode() for blob in leaf.cert_chain_pems),
            "key": leaf.private_key_pem.bytes().decode()}


def key_lines(key: str) -> list[str]:
    """The lines of a PEM key that only that key has (what must never be shown)."""
    return [line for line in key.splitlines() if len(line) > 20]
