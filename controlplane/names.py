"""Name rules the API and the CLI share: apps, config keys, process types, hostnames.

Each validator returns the normalised name or raises `InvalidName` with a sentence that says
what is wrong and what a good name looks like, because that sentence is shown to the user as is.
"""

from __future__ import annotations

import re

# Heroku's app-name rule: starts with a letter, lowercase letters, digits and dashes, 3-30 long.
APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")
# Config keys are shell-friendly words (Heroku accepts more; `\w+` keeps `$KEY` expandable).
CONFIG_KEY = re.compile(r"^\w+$", re.ASCII)
PROCESS_TYPE = re.compile(r"^[-\w]{1,128}$", re.ASCII)
# RFC 1123 section 2.1: labels of letters, digits and hyphens, not starting or ending with one.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
HOSTNAME_MAX = 253  # RFC 1035 section 2.3.4, without the trailing dot


class InvalidName(ValueError):
    """A name broke its rule; the message is meant for the user."""


def app_name(raw: object) -> str:
    if not isinstance(raw, str) or not APP_NAME.match(raw):
        raise InvalidName(
            f"invalid app name {raw!r}: use 3-30 lowercase letters, digits and dashes, "
            "starting with a letter and not ending with a dash (e.g. 'hello-world')")
    return raw


def config_key(raw: object) -> str:
    if not isinstance(raw, str) or not CONFIG_KEY.match(raw):
        raise InvalidName(
            f"invalid config var name {raw!r}: use letters, digits and underscores (e.g. 'GREETING')")
    return raw


def process_type(raw: object) -> str:
    if not isinstance(raw, str) or not PROCESS_TYPE.match(raw):
        raise InvalidName(
            f"invalid process type {raw!r}: use 1-128 letters, digits, dashes or underscores "
            "(e.g. 'web', 'worker')")
    return raw


def hostname(raw: object, *, allow_wildcard: bool = True) -> str:
    """A lowercase RFC 1123 hostname with at least two labels; `*.` may lead a wildcard."""
    if not isinstance(raw, str):
        raise InvalidName(f"invalid hostname {raw!r}: expected a string like 'www.example.com'")
    name = raw.strip().lower().rstrip(".")
    labels = name.split(".")
    wildcard = labels[0] == "*"
    if wildcard:
        if not allow_wildcard:
            raise InvalidName(f"invalid hostname {raw!r}: wildcards are not allowed here")
        labels = labels[1:]
    if (len(name) > HOSTNAME_MAX or len(labels) < 2
            or not all(_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):
        raise InvalidName(
            f"invalid hostname {raw!r}: use dot-separated labels of letters, digits and dashes "
            "(RFC 1123), e.g. 'www.example.com' or a wildcard '*.example.com'")
    return name
