"""PostgreSQL persistence of approvals (the approvals family).

A request is keyed (task, step, call): ``ON CONFLICT DO NOTHING`` makes a resumed task,
on any worker, find its request instead of asking twice. A decision is ``UPDATE ...
WHERE state = 'pending'``: of two deciders at once, one changes the row. Its
``decided_seq`` is a commit-ordered position (``wakeful_pos()``), and readers following
it stop below the oldest running transaction, so no worker misses a decision that
commits late.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from wakeful.core.approvals import COLUMNS, Approval, ApprovalState, approval_from_row, approval_row
from wakeful.core.records import Event
from wakeful.store.postgres.inserts import insert_events
from wakeful.store.postgres.rows import marks
from wakeful.store.postgres.schema import HORIZON
from wakeful.store.postgres.store import PostgresStore

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM approvals"
_INSERT = (f"INSERT INTO approvals ({', '.join(COLUMNS)}) VALUES ({marks(1, len(COLUMNS))}) "
           "ON CONFLICT (key) DO NOTHING")


class PgApprovalStore:
    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def request(self, approval: Approval, event: Event | None = None
                      ) -> tuple[Approval, bool]:
        async def op(conn: asyncpg.Connection) -> tuple[Approval, bool]:
            status = await conn.execute(_INSERT, *approval_row(approval))
            if status.endswith(" 0"):
                row = await conn.fetchrow(_SELECT + " WHERE key = $1", approval.key)
                assert row is not None  # it conflicted, so it is there
                return approval_from_row(tuple(row)), False
            if event is not None:
                await insert_events(conn, [event])
            return approval, True

        found: tuple[Approval, bool] = await self.store.write(op)
        return found

    async def decide(self, approval_id: str, state: ApprovalState, decided_by: str, *,
                     at: float, reason: str | None = None,
                     new_arguments: str | None = None, event: Event | None = None
                     ) -> Approval | None:
        async def op(conn: asyncpg.Connection) -> Approval | None:
            row = await conn.fetchrow(
                f"UPDATE approvals SET state = $1, decided_by = $2, decided_at = $3, "
                f"reason = $4, new_arguments = $5, decided_seq = wakeful_pos() WHERE id = $6 "
                f"AND state = 'pending' RETURNING {', '.join(COLUMNS)}",
                state, decided_by, at, reason, new_arguments, approval_id)
            if row is None:
                return None
            if event is not None:
                await insert_events(conn, [event])
            return approval_from_row(tuple(row))

        decided: Approval | None = await self.store.write(op, ring=("tasks",))
        return decided

    async def get(self, approval_id: str) -> Approval | None:
        rows = await self.store.fetch(_SELECT + " WHERE id = $1", approval_id)
        return approval_from_row(tuple(rows[0])) if rows else None

    async def by_key(self, key: str) -> Approval | None:
        rows = await self.store.fetch(_SELECT + " WHERE key = $1", key)
        return approval_from_row(tuple(rows[0])) if rows else None

    async def listing(self, *, state: ApprovalState | None = None,
                      task_id: str | None = None, agent: str | None = None,
                      limit: int = 1000) -> list[Approval]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state), ("task_id", task_id), ("agent", agent)):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${len(params)}")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.store.fetch(
            f"{_SELECT}{where} ORDER BY created_at, id LIMIT {int(limit)}", *params)
        return [approval_from_row(tuple(r)) for r in rows]

    async def decided_after(self, seq: int, limit: int = 1000) -> list[Approval]:
        rows = await self.store.fetch(
            f"{_SELECT} WHERE decided_seq > $1 AND decided_seq < {HORIZON} "
            f"ORDER BY decided_seq LIMIT {int(limit)}", seq)
        return [approval_from_row(tuple(r)) for r in rows]

    async def last_seq(self) -> int:
        rows = await self.store.fetch(
            f"SELECT COALESCE(MAX(decided_seq), 0) FROM approvals WHERE decided_seq < {HORIZON}")
        return int(rows[0][0])
