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


_last = (0, 0)
_RAND_BITS = 40


def new_id(prefix: str) -> str:
    """Return ``prefix_`` + 9 chars of millisecond time + 8 chars of randomness.

    Within one process ids strictly increase (as in monotonic ULIDs): an id made in the
    same millisecond as the previous one takes the previous random part plus one, so
    creation order and id order agree even for a burst of ids.
    """
    global _last
    millis = time.time_ns() // 1_000_000
    last_millis, last_rand = _last
    if millis <= last_millis and last_rand + 1 < 1 << _RAND_BITS:
        millis, rand = last_millis, last_rand + 1
    else:
        rand = int.from_bytes(os.urandom(_RAND_BITS // 8), "big") >> 1  # room to count up
    _last = (millis, rand)
    return f"{prefix}_{_b32(millis, 9)}{_b32(rand, 8)}"
