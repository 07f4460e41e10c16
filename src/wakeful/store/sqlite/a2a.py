"""SQLite persistence of A2A tasks and push-notification configs (the A2A family).

A new A2A task's row is inserted in the same ``store.write`` op as the Wakeful task, so
both commit in one transaction of the store's group commit.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from wakeful.core.a2a import A2ATaskRow
from wakeful.core.records import TaskRecord
from wakeful.store.sqlite.rows import task_insert
from wakeful.store.sqlite.store import SQLiteStore

_COLUMNS = "task_id, agent, context_id, message_id, metadata, history, created_at"


def _row(values: tuple[Any, ...]) -> A2ATaskRow:
    return A2ATaskRow(values[0], values[1], values[2], values[3], json.loads(values[4]),
                      json.loads(values[5]), values[6])


class SQLiteA2AStore:
    """A2A rows in the SQLite store (its group commit, its reader)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def create(self, row: A2ATaskRow, task: TaskRecord) -> None:
        """Store the Wakeful task and its A2A row in one transaction."""
        insert, values = task_insert(task)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(insert, values)
            conn.execute(f"INSERT INTO a2a_tasks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (row.task_id, row.agent, row.context_id, row.message_id,
                          json.dumps(row.metadata), json.dumps(row.history), row.created_at))

        await self.store.write(op)

    async def append_history(self, task_id: str, message: dict[str, Any]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            found = conn.execute("SELECT history FROM a2a_tasks WHERE task_id = ?",
                                 (task_id,)).fetchone()
            if found is not None:
                history = [*json.loads(found[0]), message]
                conn.execute("UPDATE a2a_tasks SET history = ? WHERE task_id = ?",
                             (json.dumps(history), task_id))

        await self.store.write(op)

    async def get(self, task_id: str) -> A2ATaskRow | None:
        await self.store.flush()
        found = await self.store.read(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM a2a_tasks WHERE task_id = ?", (task_id,)).fetchone())
        return None if found is None else _row(found)

    async def for_agent(self, agent: str, context_id: str | None = None) -> list[A2ATaskRow]:
        """The agent's A2A tasks, newest first."""
        await self.store.flush()
        sql = f"SELECT {_COLUMNS} FROM a2a_tasks WHERE agent = ?"
        args: list[Any] = [agent]
        if context_id:
            sql += " AND context_id = ?"
            args.append(context_id)
        sql += " ORDER BY created_at DESC, task_id DESC"
        rows = await self.store.read(lambda c: c.execute(sql, args).fetchall())
        return [_row(r) for r in rows]

    # push-notification configs ---------------------------------------------
    async def save_push(self, task_id: str, config_id: str, config: dict[str, Any]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO a2a_push_configs (task_id, id, config, created_at) "
                         "VALUES (?, ?, ?, ?) ON CONFLICT (task_id, id) DO UPDATE SET "
                         "config = excluded.config", (task_id, config_id,
                                                      json.dumps(config), time.time()))

        await self.store.write(op)

    async def pushes(self, task_id: str) -> list[tuple[str, dict[str, Any], str | None]]:
        """(config id, config, last state delivered) for each of the task's configs."""
        await self.store.flush()
        rows = await self.store.read(lambda c: c.execute(
            "SELECT id, config, delivered_state FROM a2a_push_configs WHERE task_id = ? "
            "ORDER BY created_at, id", (task_id,)).fetchall())
        return [(r[0], json.loads(r[1]), r[2]) for r in rows]

    async def delete_push(self, task_id: str, config_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM a2a_push_configs WHERE task_id = ? AND id = ?",
                                (task_id, config_id)).rowcount > 0

        deleted: bool = await self.store.write(op)
        return deleted

    async def mark_pushed(self, task_id: str, config_id: str, state: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE a2a_push_configs SET delivered_state = ? WHERE task_id = ? "
                         "AND id = ?", (state, task_id, config_id))

        await self.store.write(op)

    async def undelivered_pushes(self) -> list[tuple[str, str]]:
        """(task id, config id) of configs whose task's last state was not delivered
        yet; checked at start so a push interrupted by a crash is sent after all."""
        await self.store.flush()
        rows = await self.store.read(lambda c: c.execute(
            "SELECT p.task_id, p.id FROM a2a_push_configs p JOIN tasks t ON t.id = p.task_id "
            "WHERE p.delivered_state IS NULL OR p.delivered_state != t.state").fetchall())
        return [(r[0], r[1]) for r in rows]
