"""Helpers shared by the mailbox tests (the fixture itself is in conftest.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

AGENTS = frozenset({"alice", "bob", "carol"})
OpenMailbox = Callable[..., Any]


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()
