"""When the disk, not the write, is at fault: hold the writes and try again.

A full disk, a store made read-only, an I/O error or a lock held too long fail every
write alike, whoever made it. Failing them would end the tasks that made them (and
leave them ``running`` in the store until the next start); instead the writer keeps
the whole batch, rolls it back, waits with backoff and applies it again, so that every
awaited write still returns only once it is durable. A write that is wrong by itself
(a constraint, a fence) still fails alone, at once.
"""

from __future__ import annotations

import sqlite3

_TRANSIENT = ("database or disk is full", "attempt to write a readonly database",
              "disk i/o error", "database is locked", "unable to open database file")


class Outage(Exception):
    """The store cannot take writes now; the batch is kept and applied again."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def is_outage(exc: BaseException) -> bool:
    """Is this a fault of the store's medium rather than of one write?"""
    return isinstance(exc, sqlite3.OperationalError) and any(
        text in str(exc).lower() for text in _TRANSIENT)

