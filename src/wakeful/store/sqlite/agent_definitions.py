"""SQLite persistence of agents made at run time (definitions as JSON, tombstones)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from wakeful.core.stored_agents import Removal, StoredAgent
from wakeful.errors import WakefulError
from wakeful.store.sqlite.store import SQLiteStore

_COLUMNS = ("name, definition, created_by, parent, created_at, updated_at, version, "
            "removed_at, removal")


def _agent(row: tuple[Any, ...]) -> StoredAgent:
    return StoredAgent(row[0], json.loads(row[1]), row[2], row[3], row[4], row[5], row[6],
                       row[7], row[8])


def _select(conn: sqlite3.Connection, name: str) -> StoredAgent | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM stored_agents WHERE name = ?",
                       (name,)).fetchone()
    return None if row is None else _agent(row)


class SQLiteStoredAgents:
    """Stored agents in the SQLite store (its group commit, its reader)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def save(self, agent: StoredAgent, *, create: bool) -> StoredAgent:
        definition = json.dumps(agent.definition, sort_keys=True)

        def op(conn: sqlite3.Connection) -> StoredAgent | str:
            now = time.time()
            found = _select(conn, agent.name)
            live = found is not None and found.removed_at is None
            if create and live:
                return f"an agent named {agent.name!r} already exists"
            if not create and not live:
                return f"there is no agent named {agent.name!r} made at run time to change"
            if found is None:
                conn.execute(f"INSERT INTO stored_agents ({_COLUMNS}) VALUES "
                             "(?, ?, ?, ?, ?, ?, 1, NULL, NULL)",
                             (agent.name, definition, agent.created_by, agent.parent, now, now))
            elif create:  # a removed name made again
                conn.execute("UPDATE stored_agents SET definition = ?, created_by = ?, "
                             "parent = ?, created_at = ?, updated_at = ?, version = version "
                             "+ 1, removed_at = NULL, removal = NULL WHERE name = ?",
                             (definition, agent.created_by, agent.parent, now, now,
                              agent.name))
            else:
                conn.execute("UPDATE stored_agents SET definition = ?, updated_at = ?, "
                             "version = version + 1 WHERE name = ?",
                             (definition, now, agent.name))
            saved = _select(conn, agent.name)
            assert saved is not None
            return saved

        result = await self.store.write(op)
        if isinstance(result, str):
            raise WakefulError(result)
        saved: StoredAgent = result
        return saved

    async def remove(self, name: str, removal: Removal) -> StoredAgent | None:
        def op(conn: sqlite3.Connection) -> StoredAgent | None:
            changed = conn.execute(
                "UPDATE stored_agents SET removed_at = ?, removal = ?, version = version + 1 "
                "WHERE name = ? AND removed_at IS NULL", (time.time(), removal, name)).rowcount
            return _select(conn, name) if changed else None

        removed: StoredAgent | None = await self.store.write(op)
        return removed

    async def get(self, name: str) -> StoredAgent | None:
        await self.store.flush()
        found: StoredAgent | None = await self.store.read(lambda c: _select(c, name))
        return found

    async def all(self) -> list[StoredAgent]:
        await self.store.flush()
        rows = await self.store.read(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM stored_agents ORDER BY name").fetchall())
        return [_agent(r) for r in rows]

    async def count_spawned(self, parent: str) -> int:
        await self.store.flush()
        row = await self.store.read(lambda c: c.execute(
            "SELECT COUNT(*) FROM stored_agents WHERE parent = ? AND removed_at IS NULL",
            (parent,)).fetchone())
        return int(row[0])
