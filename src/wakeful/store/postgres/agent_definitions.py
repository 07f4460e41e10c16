"""PostgreSQL persistence of agents made at run time (definitions as JSON, tombstones).

A save locks the agent's row (``FOR UPDATE``) before deciding create-or-change, so two
workers creating the same name at once get one agent and one clear error."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from wakeful.core.stored_agents import Removal, StoredAgent
from wakeful.errors import WakefulError
from wakeful.store.postgres.schema import NOW
from wakeful.store.postgres.store import PostgresStore

_COLUMNS = ("name, definition, created_by, parent, created_at, updated_at, version, "
            "removed_at, removal")


def _agent(row: Any) -> StoredAgent:
    return StoredAgent(row[0], json.loads(row[1]), row[2], row[3], row[4], row[5], row[6],
                       row[7], row[8])


async def _select(conn: asyncpg.Connection, name: str, lock: bool = False
                  ) -> StoredAgent | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM stored_agents WHERE name = $1"
                              + (" FOR UPDATE" if lock else ""), name)
    return None if row is None else _agent(row)


class PgStoredAgents:
    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def save(self, agent: StoredAgent, *, create: bool) -> StoredAgent:
        definition = json.dumps(agent.definition, sort_keys=True)

        async def op(conn: asyncpg.Connection) -> StoredAgent | str:
            if create:  # a row to lock, whoever creates it first
                await conn.execute(
                    f"INSERT INTO stored_agents ({_COLUMNS}) VALUES ($1, $2, $3, $4, {NOW}, "
                    f"{NOW}, 0, {NOW}, NULL) ON CONFLICT (name) DO NOTHING",
                    agent.name, definition, agent.created_by, agent.parent)
            found = await _select(conn, agent.name, lock=True)
            live = found is not None and found.removed_at is None
            if create and live:
                return f"an agent named {agent.name!r} already exists"
            if not create and not live:
                return f"there is no agent named {agent.name!r} made at run time to change"
            if create:
                await conn.execute(
                    f"UPDATE stored_agents SET definition = $1, created_by = $2, parent = $3, "
                    f"created_at = {NOW}, updated_at = {NOW}, version = version + 1, "
                    "removed_at = NULL, removal = NULL WHERE name = $4",
                    definition, agent.created_by, agent.parent, agent.name)
            else:
                await conn.execute(
                    f"UPDATE stored_agents SET definition = $1, updated_at = {NOW}, "
                    "version = version + 1 WHERE name = $2", definition, agent.name)
            saved = await _select(conn, agent.name)
            assert saved is not None
            return saved

        result = await self.store.write(op, ring=("agents",))
        if isinstance(result, str):
            raise WakefulError(result)
        saved: StoredAgent = result
        return saved

    async def remove(self, name: str, removal: Removal) -> StoredAgent | None:
        async def op(conn: asyncpg.Connection) -> StoredAgent | None:
            status = await conn.execute(
                f"UPDATE stored_agents SET removed_at = {NOW}, removal = $1, version = "
                "version + 1 WHERE name = $2 AND removed_at IS NULL", removal, name)
            return None if status.endswith(" 0") else await _select(conn, name)

        removed: StoredAgent | None = await self.store.write(op, ring=("agents",))
        return removed

    async def get(self, name: str) -> StoredAgent | None:
        rows = await self.store.fetch(f"SELECT {_COLUMNS} FROM stored_agents WHERE name = $1",
                                      name)
        return _agent(rows[0]) if rows else None

    async def all(self) -> list[StoredAgent]:
        rows = await self.store.fetch(f"SELECT {_COLUMNS} FROM stored_agents ORDER BY name")
        return [_agent(r) for r in rows]

    async def count_spawned(self, parent: str) -> int:
        rows = await self.store.fetch("SELECT COUNT(*) FROM stored_agents WHERE parent = $1 "
                                      "AND removed_at IS NULL", parent)
        return int(rows[0][0])
