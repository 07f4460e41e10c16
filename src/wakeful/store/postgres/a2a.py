"""PostgreSQL persistence of A2A tasks and push-notification configs (the A2A family;
a port of the SQLite one).

A new A2A task's row is inserted in the same ``store.write`` op as the Wakeful task, so
both commit in one transaction of the store's group commit.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import asyncpg

from wakeful.core.a2a import A2ATaskRow
from wakeful.core.records import TaskRecord
from wakeful.store.postgres.rows import task_insert

if TYPE_CHECKING:
    from wakeful.store.postgres.store import PostgresStore

_COLUMNS = "task_id, agent, context_id, message_id, metadata, history, created_at"


def _row(values: Any) -> A2ATaskRow:
    return A2ATaskRow(values[0], values[1], values[2], values[3], json.loads(values[4]),
                      json.loads(values[5]), values[6])


class PgA2AStore:
    """A2A rows in the PostgreSQL store (its group commit, its read pool)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def create(self, row: A2ATaskRow, task: TaskRecord) -> None:
        """Store the Wakeful task and its A2A row in one transaction."""
        insert, values = task_insert(task)

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(insert, *values)
            await conn.execute(f"INSERT INTO a2a_tasks ({_COLUMNS}) VALUES ($1, $2, $3, $4, "
                               "$5, $6, $7)", row.task_id, row.agent, row.context_id,
                               row.message_id, json.dumps(row.metadata),
                               json.dumps(row.history), row.created_at)

        await self.store.write(op, ring=("tasks",))

    async def append_history(self, task_id: str, message: dict[str, Any]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            found = await conn.fetchval("SELECT history FROM a2a_tasks WHERE task_id = $1 "
                                        "FOR UPDATE", task_id)
            if found is not None:
                history = [*json.loads(found), message]
                await conn.execute("UPDATE a2a_tasks SET history = $1 WHERE task_id = $2",
                                   json.dumps(history), task_id)

        await self.store.write(op)

    async def get(self, task_id: str) -> A2ATaskRow | None:
        await self.store.flush()
        rows = await self.store.fetch(f"SELECT {_COLUMNS} FROM a2a_tasks WHERE task_id = $1",
                                      task_id)
        return _row(rows[0]) if rows else None

    async def for_agent(self, agent: str, context_id: str | None = None) -> list[A2ATaskRow]:
        """The agent's A2A tasks, newest first."""
        await self.store.flush()
        sql = f"SELECT {_COLUMNS} FROM a2a_tasks WHERE agent = $1"
        args: list[Any] = [agent]
        if context_id:
            sql += " AND context_id = $2"
            args.append(context_id)
        sql += " ORDER BY created_at DESC, task_id DESC"
        return [_row(r) for r in await self.store.fetch(sql, *args)]

    # push-notification configs ---------------------------------------------
    async def save_push(self, task_id: str, config_id: str, config: dict[str, Any]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("INSERT INTO a2a_push_configs (task_id, id, config, created_at) "
                               "VALUES ($1, $2, $3, $4) ON CONFLICT (task_id, id) DO UPDATE "
                               "SET config = excluded.config", task_id, config_id,
                               json.dumps(config), time.time())

        await self.store.write(op)

    async def pushes(self, task_id: str) -> list[tuple[str, dict[str, Any], str | None]]:
        """(config id, config, last state delivered) for each of the task's configs."""
        await self.store.flush()
        rows = await self.store.fetch(
            "SELECT id, config, delivered_state FROM a2a_push_configs WHERE task_id = $1 "
            "ORDER BY created_at, id", task_id)
        return [(r[0], json.loads(r[1]), r[2]) for r in rows]

    async def delete_push(self, task_id: str, config_id: str) -> bool:
        async def op(conn: asyncpg.Connection) -> bool:
            status: str = await conn.execute("DELETE FROM a2a_push_configs WHERE task_id = $1 "
                                             "AND id = $2", task_id, config_id)
            return not status.endswith(" 0")

        deleted: bool = await self.store.write(op)
        return deleted

    async def mark_pushed(self, task_id: str, config_id: str, state: str) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("UPDATE a2a_push_configs SET delivered_state = $1 WHERE "
                               "task_id = $2 AND id = $3", state, task_id, config_id)

        await self.store.write(op)

    async def undelivered_pushes(self) -> list[tuple[str, str]]:
        """(task id, config id) of configs whose task's last state was not delivered
        yet; checked at start so a push interrupted by a crash is sent after all."""
        await self.store.flush()
        rows = await self.store.fetch(
            "SELECT p.task_id, p.id FROM a2a_push_configs p JOIN tasks t ON t.id = p.task_id "
            "WHERE p.delivered_state IS NULL OR p.delivered_state != t.state")
        return [(r[0], r[1]) for r in rows]
