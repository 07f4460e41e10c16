"""PostgreSQL persistence of people: name, role and the hash of their token."""

from __future__ import annotations

from typing import Any

import asyncpg

from wakeful.core.people import Person, check_role
from wakeful.errors import WakefulError
from wakeful.store.postgres.store import PostgresStore

_COLUMNS = "name, role, created_at, created_by"


def _person(row: Any) -> Person:
    return Person(row[0], check_role(row[1]), row[2], row[3])


class PgPeopleStore:
    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def add(self, person: Person, token_hash: str) -> None:
        async def op(conn: asyncpg.Connection) -> bool:
            status = await conn.execute(
                f"INSERT INTO people ({_COLUMNS}, token_hash) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (name) DO NOTHING", person.name, person.role, person.created_at,
                person.created_by, token_hash)
            return status.endswith(" 1")

        if not await self.store.write(op):
            raise WakefulError(f"a person named {person.name!r} already exists (remove them "
                               "first to give them a new token)")

    async def remove(self, name: str) -> bool:
        async def op(conn: asyncpg.Connection) -> bool:
            status = await conn.execute("DELETE FROM people WHERE name = $1", name)
            return not status.endswith(" 0")

        removed: bool = await self.store.write(op)
        return removed

    async def get(self, name: str) -> Person | None:
        rows = await self.store.fetch(f"SELECT {_COLUMNS} FROM people WHERE name = $1", name)
        return _person(rows[0]) if rows else None

    async def list(self) -> list[Person]:
        rows = await self.store.fetch(f"SELECT {_COLUMNS} FROM people ORDER BY name")
        return [_person(r) for r in rows]

    async def by_token(self, token_hash: str) -> Person | None:
        rows = await self.store.fetch(f"SELECT {_COLUMNS} FROM people WHERE token_hash = $1",
                                      token_hash)
        return _person(rows[0]) if rows else None
