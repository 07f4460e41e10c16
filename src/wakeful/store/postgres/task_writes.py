"""Writing tasks to the PostgreSQL store: creating, claiming, updating them and their
steps (a mixin of :class:`~wakeful.store.postgres.store.PostgresStore`; every write goes
through its group-commit writer, and the frequent ones say how they merge with others
of their kind, see :mod:`~wakeful.store.postgres.merged`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from wakeful.core.encoding import to_json
from wakeful.core.records import Fence, TaskRecord
from wakeful.errors import ConflictError, FenceError
from wakeful.store.base import step_hole
from wakeful.store.postgres.merged import HAS_MESSAGE, ClaimWrite, StepWrite, TaskInsert
from wakeful.store.postgres.rows import (
    FENCE_SQL,
    TASK_COLUMNS,
    fence_sql,
    task_from_row,
    task_insert,
)
from wakeful.store.postgres.writer import Merge, PgOp
from wakeful.store.task_sql import task_update_sql


async def require_fence(conn: asyncpg.Connection, fence: Fence, what: str) -> None:
    """Raise FenceError (in the caller's transaction) unless ``fence`` still holds."""
    if not await conn.fetchval("SELECT " + fence_sql(1), fence.agent, fence.owner,
                               fence.epoch):
        raise FenceError(fence.agent, fence.owner, fence.epoch, what)


async def fenced_update(conn: asyncpg.Connection, sql: str, params: Sequence[Any],
                        fence: Fence | None, what: str) -> bool:
    """Run a (fenced) UPDATE; FenceError if the fence refused it, else whether a row
    changed."""
    status = await conn.execute(sql, *params)
    changed = not status.endswith(" 0")
    if not changed and fence is not None:
        await require_fence(conn, fence, what)
    return changed


async def apply_mail_changes(conn: asyncpg.Connection, changes: Sequence[Any]) -> None:
    """Mailbox changes (acks, a delegation) committed with a task's own write."""
    from wakeful.store.postgres.mail import apply_changes

    await apply_changes(conn, changes)



class PgTaskWrites:
    if TYPE_CHECKING:  # what the store provides
        async def write(self, op: PgOp, ring: Iterable[str] = (),
                        merge: Merge | None = None) -> Any: ...

        def write_soon(self, op: PgOp, ring: Iterable[str] = (),
                       merge: Merge | None = None) -> asyncio.Future[None]: ...

    async def create_task(self, record: TaskRecord, mail: Sequence[Any] = ()) -> None:
        sql, values = task_insert(record)

        async def op(conn: asyncpg.Connection) -> None:
            try:
                await conn.execute(sql, *values)
            except asyncpg.UniqueViolationError as exc:
                raise ConflictError(f"task {record.id}: {exc}") from None
            if mail:
                await apply_mail_changes(conn, mail)

        if mail:
            await self.write(op, ring=("tasks", "mail"))
        else:
            await self.write(op, ring=("tasks",), merge=TaskInsert(record.id, values))

    @staticmethod
    def _update_sql(task_id: str, fields: dict[str, Any], fence: Fence | None = None
                    ) -> tuple[str, list[Any]]:
        fields.setdefault("updated_at", time.time())
        if "state" in fields and hasattr(fields["state"], "value"):
            fields["state"] = fields["state"].value
        params = [*fields.values(), task_id]
        sql = task_update_sql(tuple(fields), FENCE_SQL if fence is not None else None, True)
        if fence is not None:
            params.extend([fence.agent, fence.owner, fence.epoch])
        return sql, params

    async def update_task(self, task_id: str, fence: Fence | None = None, *,
                          expect_state: str | Sequence[str] | None = None, **fields: Any
                          ) -> bool:
        state = fields.get("state")
        requeued = getattr(state, "value", state) == "queued"
        sql, params = self._update_sql(task_id, fields, fence)
        if expect_state is not None:
            wanted = [expect_state] if isinstance(expect_state, str) else list(expect_state)
            params.append(wanted)
            sql += f" AND state = ANY(${len(params)}::text[])"
        what = f"task {task_id} update"

        async def op(conn: asyncpg.Connection) -> bool:
            return await fenced_update(conn, sql, params, fence, what)

        changed: bool = await self.write(op, ring=("tasks",) if requeued else ())
        return changed

    async def claim_task(self, task_id: str, fence: Fence,
                         opening: Sequence[dict[str, Any]] = (),
                         started_at: float | None = None) -> tuple[TaskRecord, bool] | None:
        now = time.time()
        sql = ("UPDATE tasks SET state = 'running', owner = $1, updated_at = $2, "
               "started_at = COALESCE(started_at, $3) WHERE id = $4 AND state = 'queued' "
               "AND " + fence_sql(5) + " RETURNING " + ", ".join(TASK_COLUMNS))
        rows = [(task_id, i, to_json(m)) for i, m in enumerate(opening)]

        async def op(conn: asyncpg.Connection) -> tuple[TaskRecord, bool] | None:
            before = await conn.fetchval("SELECT started_at FROM tasks WHERE id = $1", task_id)
            row = await conn.fetchrow(sql, fence.owner, now, started_at or now, task_id,
                                      fence.agent, fence.owner, fence.epoch)
            if row is None:
                await require_fence(conn, fence, f"claim of task {task_id}")
                return None
            resumed = before is not None
            if not resumed and rows:
                await conn.executemany("INSERT INTO task_messages (task_id, seq, data) "
                                       "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", rows)
            return task_from_row(row), resumed

        claimed: tuple[TaskRecord, bool] | None = await self.write(
            op, merge=ClaimWrite(task_id, fence, now, started_at or now, rows))
        return claimed

    def queue_step(
        self, task_id: str, first_seq: int, messages: Sequence[dict[str, Any]], *,
        fence: Fence | None = None, mail: Sequence[Any] = (), **fields: Any
    ) -> asyncio.Future[None]:
        sql, params = self._update_sql(task_id, fields, fence)
        rows = [(task_id, first_seq + i, to_json(m)) for i, m in enumerate(messages)]
        after = first_seq if rows and first_seq else None  # this message must be stored

        async def op(conn: asyncpg.Connection) -> None:
            await fenced_update(conn, sql, params, fence, f"step of task {task_id}")
            if after is not None and await conn.fetchval(HAS_MESSAGE, task_id,
                                                         after - 1) is None:
                raise step_hole(task_id, after)
            if rows:
                await conn.executemany(
                    "INSERT INTO task_messages (task_id, seq, data) VALUES ($1, $2, $3) "
                    "ON CONFLICT (task_id, seq) DO UPDATE SET data = excluded.data", rows)
            if mail:
                await apply_mail_changes(conn, mail)

        if mail:
            return self.write_soon(op, ring=("mail",))
        # _update_sql completed ``fields`` (updated_at, the state's value)
        return self.write_soon(op, merge=StepWrite(task_id, tuple(fields),
                                                   tuple(fields.values()), rows, fence))

