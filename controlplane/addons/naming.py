"""Names of an add-on and of what its provider makes, derived from the app's name (pure).

An add-on is named `<kind>-<suffix>` (`postgresql-3f9a1c`, like Heroku's
`postgresql-curved-12345`): unique on the platform, and what `addons:destroy` takes. Its
resource on the provider (the PostgreSQL database and the role that owns it) is
`app_<app>_<suffix>`: an app name's dashes become underscores, so the result is a plain
lowercase SQL identifier (letters, digits, `_`) that needs no quoting and still reads as the
app's. App names never hold `_`, so two apps never map to one prefix; the random suffix keeps
an app created again under an old name from meeting a database left by its predecessor.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from controlplane import names

SUFFIX_HEX = 6  # 16.7 million suffixes per app name: a clash is refused, not silent
# PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes; ours stay well below.
IDENTIFIER_MAX = 63
RESOURCE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class AddonNames:
    name: str      # postgresql-3f9a1c
    resource: str  # app_hello_world_3f9a1c


def suffix(rng: random.Random) -> str:
    return f"{rng.getrandbits(4 * SUFFIX_HEX):0{SUFFIX_HEX}x}"


def derive(kind: str, app_name: str, rng: random.Random) -> AddonNames:
    """Names for a new add-on of `kind` on the app `app_name`."""
    app = names.app_name(app_name)
    tail = suffix(rng)
    resource = f"app_{app.replace('-', '_')}_{tail}"
    if len(resource) > IDENTIFIER_MAX or not RESOURCE.match(resource):
        raise AssertionError(f"derived resource name {resource!r} breaks its rule")  # a bug
    return AddonNames(f"{kind}-{tail}", resource)


def quote_identifier(name: str) -> str:
    """A SQL identifier in double quotes, inner quotes doubled (PostgreSQL docs 4.1.1), so a
    name is never read as SQL whatever it holds."""
    if "\x00" in name:
        raise ValueError("an identifier cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'


def sql_name(name: str) -> str:
    """An identifier as a person would type it: bare when it is a plain lowercase one, quoted
    otherwise (for SQL shown in a message)."""
    return name if RESOURCE.match(name) else quote_identifier(name)


def quote_literal(text: str) -> str:
    """A SQL string literal: single quotes doubled (standard_conforming_strings, on since
    PostgreSQL 9.1, keeps backslashes literal). For the few statements that take no
    parameters, such as CREATE ROLE ... PASSWORD."""
    if "\x00" in text:
        raise ValueError("a string literal cannot contain a NUL character")
    return "'" + text.replace("'", "''") + "'"
