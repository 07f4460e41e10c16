"""Reading tasks and conversations from the PostgreSQL store (a mixin of
:class:`~wakeful.store.postgres.store.PostgresStore`; reads use its pool, beside the
writer connection)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol

import asyncpg

from wakeful.core.records import AgentTotals, TaskRecord
from wakeful.core.states import TaskState
from wakeful.store.postgres.rows import TASK_SELECT, task_from_row


class _Reads(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...

    async def read(self, query: Callable[[asyncpg.Connection], Any]) -> Any: ...


class PgTaskReads:
    async def get_task(self: _Reads, task_id: str) -> TaskRecord | None:
        rows = await self.fetch(TASK_SELECT + " WHERE id = $1", task_id)
        return task_from_row(rows[0]) if rows else None

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
            params.append(agent)
            clauses.append(f"agent = ${len(params)}")
        if states is not None:
            params.append([s.value for s in states])
            clauses.append(f"state = ANY(${len(params)}::text[])")
        if created_after is not None:
            params.append(created_after)
            clauses.append(f"id > ${len(params)}")
        sql = TASK_SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY created_at, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [task_from_row(r) for r in await self.fetch(sql, *params)]

    async def count_tasks(self: _Reads) -> dict[tuple[str, TaskState], int]:
        rows = await self.fetch("SELECT agent, state, COUNT(*) FROM tasks GROUP BY agent, state")
        return {(r[0], TaskState(r[1])): r[2] for r in rows}

    async def agent_totals(self: _Reads, agent: str | None = None) -> dict[str, AgentTotals]:
        where, params = (" WHERE agent = $1", [agent]) if agent is not None else ("", [])
        rows = await self.fetch(
            "SELECT agent, COUNT(*), COUNT(*) FILTER (WHERE state IN ('done', 'failed', "
            "'cancelled')), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
            f"COALESCE(SUM(cost), 0), COALESCE(SUM(tool_calls), 0) FROM tasks{where} "
            "GROUP BY agent", *params)
        return {r[0]: AgentTotals(int(r[1]), int(r[2] or 0), int(r[3]), int(r[4]),
                                  float(r[5]), int(r[6])) for r in rows}

    async def unanswered(self: _Reads, agents: Collection[str]) -> list[TaskRecord]:
        wanted = list(agents)
        if not wanted:
            return []
        sql = (f"{TASK_SELECT} WHERE agent = ANY($1::text[]) AND created_by LIKE 'person:%' "
               "AND cause_id IS NOT NULL AND state IN ('done', 'failed', 'cancelled') AND "
               "NOT EXISTS (SELECT 1 FROM mail m WHERE m.sender = tasks.agent AND "
               "m.idempotency_key = 'answer:' || tasks.id) ORDER BY created_at, id")
        return [task_from_row(r) for r in await self.fetch(sql, wanted)]

    async def tasks_caused_by(self: _Reads, cause_id: str, agent: str | None = None
                              ) -> list[TaskRecord]:
        sql = f"{TASK_SELECT} WHERE cause_id = $1" + (" AND agent = $2" if agent else "")
        params = [cause_id, agent] if agent else [cause_id]
        return [task_from_row(r) for r in
                await self.fetch(sql + " ORDER BY created_at, id", *params)]

    async def child_tasks(self: _Reads, parent_ids: Iterable[str]) -> list[TaskRecord]:
        wanted = list(parent_ids)
        if not wanted:
            return []
        return [task_from_row(r) for r in await self.fetch(
            f"{TASK_SELECT} WHERE parent_id = ANY($1::text[]) ORDER BY created_at, id",
            wanted)]

    async def load_messages(self: _Reads, task_id: str) -> list[dict[str, Any]]:
        rows = await self.fetch("SELECT data FROM task_messages WHERE task_id = $1 "
                                "ORDER BY seq", task_id)
        return [json.loads(r[0]) for r in rows]
