"""SQLite persistence of people: name, role and the hash of their token."""

from __future__ import annotations

import sqlite3
from typing import Any

from wakeful.core.people import Person, check_role
from wakeful.errors import WakefulError
from wakeful.store.sqlite.store import SQLiteStore

_COLUMNS = "name, role, created_at, created_by"


def _person(row: tuple[Any, ...]) -> Person:
    return Person(row[0], check_role(row[1]), row[2], row[3])


class SQLitePeopleStore:
    """People in the SQLite store (its group commit, its reader)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def add(self, person: Person, token_hash: str) -> None:
        def op(conn: sqlite3.Connection) -> bool:
            found = conn.execute("SELECT 1 FROM people WHERE name = ?",
                                 (person.name,)).fetchone()
            if found is not None:
                return False
            conn.execute(f"INSERT INTO people ({_COLUMNS}, token_hash) VALUES (?, ?, ?, ?, ?)",
                         (person.name, person.role, person.created_at, person.created_by,
                          token_hash))
            return True

        if not await self.store.write(op):
            raise WakefulError(f"a person named {person.name!r} already exists (remove them "
                               "first to give them a new token)")

    async def remove(self, name: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM people WHERE name = ?", (name,)).rowcount > 0

        removed: bool = await self.store.write(op)
        return removed

    async def get(self, name: str) -> Person | None:
        await self.store.flush()
        row = await self.store.read(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM people WHERE name = ?", (name,)).fetchone())
        return None if row is None else _person(row)

    async def list(self) -> list[Person]:
        await self.store.flush()
        rows = await self.store.read(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM people ORDER BY name").fetchall())
        return [_person(r) for r in rows]

    async def by_token(self, token_hash: str) -> Person | None:
        await self.store.flush()
        row = await self.store.read(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM people WHERE token_hash = ?", (token_hash,)).fetchone())
        return None if row is None else _person(row)
