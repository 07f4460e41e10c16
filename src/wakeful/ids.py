"""Short, time-sortable identifiers.

Ids sort by creation time so that listings and event logs read in order without an
extra column, and they stay short enough to type in the CLI.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """Return ``prefix_`` + 9 chars of millisecond time + 8 random chars."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(5), "big")
    return f"{prefix}_{_b32(millis, 9)}{_b32(rand, 8)}"
