"""Helpers shared by the mailbox tests (the fixture itself is in conftest.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wakeful.mailbox import Mailbox
from wakeful.store.sqlite import SQLiteStore

AGENTS = frozenset({"alice", "bob", "carol"})
OpenMailbox = Callable[..., Any]


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def stored(mailbox: Mailbox, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (plain SQL both backends read alike) from the mailbox's store,
    once everything queued is committed."""
    await mailbox.flush()
    store = mailbox.store.store  # type: ignore[attr-defined]
    await store.flush()
    if isinstance(store, SQLiteStore):
        found: list[tuple[Any, ...]] = await store.read(lambda c: c.execute(sql).fetchall())
        return found
    return [tuple(r) for r in await store.fetch(sql)]
