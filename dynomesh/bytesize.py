"""Byte sizes as people write them: `10MB`, `512k`, `1 GiB`, `1048576`.

Shared by the router's `--max-body-size` flag and `dynomesh config:router --max-body-size`, so
that both read a size the same way. K, M and G are powers of 1024, as in nginx's
`client_max_body_size` (`KB` and `KiB` mean the same here): a body limit is about memory and
disk, where binary units are the habit.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024,
          "m": 1024 ** 2, "mb": 1024 ** 2, "mib": 1024 ** 2,
          "g": 1024 ** 3, "gb": 1024 ** 3, "gib": 1024 ** 3}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*")
_FORMAT = (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024))


class ByteSizeError(ValueError):
    """A size that cannot be read; the message says what a good one looks like."""


def parse_byte_size(text: str) -> int:
    """`10MB` -> 10485760. Raises ByteSizeError naming the accepted forms."""
    match = _SIZE.fullmatch(text.lower())
    if match is None or match[2] not in _UNITS:
        raise ByteSizeError(f"{text!r} is not a size: write a number with an optional unit, "
                            "B, KB, MB or GB (powers of 1024), e.g. 10MB or 512KB")
    size = float(match[1]) * _UNITS[match[2]]
    if size != int(size):
        raise ByteSizeError(f"{text!r} is not a whole number of bytes")
    return int(size)


def format_byte_size(size: int) -> str:
    """10485760 -> `10 MB`; sizes that are not a whole number of a unit stay in bytes."""
    for unit, factor in _FORMAT:
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"
