"""SQLite persistence of approvals (the approvals family).

A decision is ``UPDATE ... WHERE id = ? AND state = 'pending'``: of two processes
deciding at once, one changes the row and the other changes nothing. The decision's
``decided_seq`` (one more than the largest so far) and its ``approval.decided`` event are
written in the same savepoint of the store's group commit.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from wakeful.core.approvals import COLUMNS, Approval, ApprovalState, approval_from_row, approval_row
from wakeful.core.records import Event
from wakeful.store.sqlite.rows import EVENT_INSERT, event_row
from wakeful.store.sqlite.store import SQLiteStore

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM approvals"
_INSERT = (f"INSERT INTO approvals ({', '.join(COLUMNS)}) "
           f"VALUES ({', '.join('?' for _ in COLUMNS)})")


def _log(conn: sqlite3.Connection, event: Event | None) -> None:
    if event is not None:
        event.id = conn.execute(EVENT_INSERT, event_row(event)).lastrowid


class SQLiteApprovalStore:
    """Approval rows in the SQLite store (its group commit, its reader)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def request(self, approval: Approval, event: Event | None = None
                      ) -> tuple[Approval, bool]:
        def op(conn: sqlite3.Connection) -> tuple[Approval, bool]:
            row = conn.execute(_SELECT + " WHERE key = ?", (approval.key,)).fetchone()
            if row is not None:
                return approval_from_row(row), False
            conn.execute(_INSERT, approval_row(approval))
            _log(conn, event)
            return approval, True

        found: tuple[Approval, bool] = await self.store.write(op)
        return found

    async def decide(self, approval_id: str, state: ApprovalState, decided_by: str, *,
                     at: float, reason: str | None = None,
                     new_arguments: str | None = None, event: Event | None = None
                     ) -> Approval | None:
        def op(conn: sqlite3.Connection) -> Approval | None:
            cursor = conn.execute(
                "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?, reason = ?, "
                "new_arguments = ?, decided_seq = (SELECT COALESCE(MAX(decided_seq), 0) + 1 "
                "FROM approvals) WHERE id = ? AND state = 'pending'",
                (state, decided_by, at, reason, new_arguments, approval_id))
            if cursor.rowcount != 1:
                return None
            _log(conn, event)
            row = conn.execute(_SELECT + " WHERE id = ?", (approval_id,)).fetchone()
            return approval_from_row(row)

        decided: Approval | None = await self.store.write(op)
        return decided

    async def get(self, approval_id: str) -> Approval | None:
        row = await self.store.read(lambda c: c.execute(
            _SELECT + " WHERE id = ?", (approval_id,)).fetchone())
        return approval_from_row(row) if row else None

    async def by_key(self, key: str) -> Approval | None:
        row = await self.store.read(lambda c: c.execute(
            _SELECT + " WHERE key = ?", (key,)).fetchone())
        return approval_from_row(row) if row else None

    async def listing(self, *, state: ApprovalState | None = None,
                      task_id: str | None = None, agent: str | None = None,
                      limit: int = 1000) -> list[Approval]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state), ("task_id", task_id), ("agent", agent)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"{_SELECT}{where} ORDER BY created_at, id LIMIT {int(limit)}"
        rows = await self.store.read(lambda c: c.execute(sql, params).fetchall())
        return [approval_from_row(r) for r in rows]

    async def decided_after(self, seq: int, limit: int = 1000) -> list[Approval]:
        rows = await self.store.read(lambda c: c.execute(
            _SELECT + f" WHERE decided_seq > ? ORDER BY decided_seq LIMIT {int(limit)}",
            (seq,)).fetchall())
        return [approval_from_row(r) for r in rows]

    async def last_seq(self) -> int:
        row = await self.store.read(lambda c: c.execute(
            "SELECT COALESCE(MAX(decided_seq), 0) FROM approvals").fetchone())
        return int(row[0])
