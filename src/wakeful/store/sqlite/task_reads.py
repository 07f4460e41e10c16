"""Reading tasks and conversations from the SQLite store (a mixin of
:class:`~wakeful.store.sqlite.store.SQLiteStore`; every read goes through its reader
connection, beside the writer)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol, TypeVar

from wakeful.core.records import AgentTotals, TaskRecord
from wakeful.core.states import TaskState
from wakeful.store.sqlite.rows import _TASK_SELECT, task_from_row

T = TypeVar("T")


class _Reads(Protocol):
    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T: ...


class SQLiteTaskReads:
    """Tasks, their counts and totals, and conversations."""

    async def get_task(self: _Reads, task_id: str) -> TaskRecord | None:
        row = await self.read(lambda c: c.execute(_TASK_SELECT + " WHERE id = ?",
                                                  (task_id,)).fetchone())
        return task_from_row(row) if row else None

    async def list_tasks(
        self: _Reads,
        agent: str | None = None,
        states: Iterable[TaskState] | None = None,
        limit: int | None = None,
        created_after: str | None = None,
    ) -> list[TaskRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if agent is not None:
            clauses.append("agent = ?")
            params.append(agent)
        if states is not None:
            wanted = [s.value for s in states]
            clauses.append(f"state IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        if created_after is not None:
            clauses.append("id > ?")
            params.append(created_after)
        sql = _TASK_SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY created_at, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = await self.read(lambda c: c.execute(sql, params).fetchall())
        return [task_from_row(r) for r in rows]

    async def count_tasks(self: _Reads) -> dict[tuple[str, TaskState], int]:
        rows = await self.read(lambda c: c.execute(
            "SELECT agent, state, COUNT(*) FROM tasks GROUP BY agent, state").fetchall())
        return {(r[0], TaskState(r[1])): r[2] for r in rows}

    async def agent_totals(self: _Reads, agent: str | None = None) -> dict[str, AgentTotals]:
        where, params = (" WHERE agent = ?", [agent]) if agent is not None else ("", [])
        rows = await self.read(lambda c: c.execute(
            "SELECT agent, COUNT(*), SUM(state IN ('done', 'failed', 'cancelled')), "
            "COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
            f"COALESCE(SUM(cost), 0), COALESCE(SUM(tool_calls), 0) FROM tasks{where} "
            "GROUP BY agent", params).fetchall())
        return {r[0]: AgentTotals(int(r[1]), int(r[2] or 0), int(r[3]), int(r[4]),
                                  float(r[5]), int(r[6])) for r in rows}

    async def unanswered(self: _Reads, agents: Collection[str]) -> list[TaskRecord]:
        wanted = list(agents)
        if not wanted:
            return []
        sql = (f"{_TASK_SELECT} WHERE agent IN ({', '.join('?' for _ in wanted)}) AND "
               "created_by LIKE 'person:%' AND cause_id IS NOT NULL AND state IN "
               "('done', 'failed', 'cancelled') AND NOT EXISTS (SELECT 1 FROM mail m WHERE "
               "m.sender = tasks.agent AND m.idempotency_key = 'answer:' || tasks.id) "
               "ORDER BY created_at, id")
        rows = await self.read(lambda c: c.execute(sql, wanted).fetchall())
        return [task_from_row(r) for r in rows]

    async def tasks_caused_by(self: _Reads, cause_id: str, agent: str | None = None
                              ) -> list[TaskRecord]:
        sql = f"{_TASK_SELECT} WHERE cause_id = ?" + (" AND agent = ?" if agent else "")
        params = [cause_id, agent] if agent else [cause_id]
        rows = await self.read(lambda c: c.execute(sql + " ORDER BY created_at, id",
                                                   params).fetchall())
        return [task_from_row(r) for r in rows]

    async def child_tasks(self: _Reads, parent_ids: Iterable[str]) -> list[TaskRecord]:
        wanted = list(parent_ids)
        if not wanted:
            return []
        sql = (f"{_TASK_SELECT} WHERE parent_id IN ({', '.join('?' for _ in wanted)}) "
               "ORDER BY created_at, id")
        rows = await self.read(lambda c: c.execute(sql, wanted).fetchall())
        return [task_from_row(r) for r in rows]

    async def load_messages(self: _Reads, task_id: str) -> list[dict[str, Any]]:
        rows = await self.read(lambda c: c.execute(
            "SELECT data FROM task_messages WHERE task_id = ? ORDER BY seq", (task_id,)
        ).fetchall())
        return [json.loads(r[0]) for r in rows]

