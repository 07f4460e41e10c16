"""Writes applied together: many tasks' steps, claims and creations, or many agents'
states, in a few statements per batch.

Why: under load a batch holds a step of most running tasks (a thousand agents: about a
thousand steps per commit) and as many agent state changes. Applied one by one, each is
two or three round trips (a fence check, the row, the messages), each a statement the
server plans and runs alone, and the single writer connection spent its time waiting on
them: about 900 steps a second. Together, a group is one fence check (``FOR SHARE`` on
every lease it names, as each write's own statement would take, held to the commit) and
one set-based statement per table, fed by arrays. The same holds for a thousand tasks
created and claimed at once (three round trips per claim were most of a run's start).

A write whose fence no longer holds, or a step that follows a message that is not
stored (see ``Store.queue_step``), makes its group raise; the writer then applies the
batch again one write at a time, so that only that write is refused (with its
:class:`~wakeful.errors.FenceError` or :class:`~wakeful.errors.StoreError`) and the
others commit.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from wakeful.core.records import Fence, TaskRecord
from wakeful.errors import ConflictError
from wakeful.store.postgres.rows import TASK_COLUMNS, task_from_row

TASK_TYPES = {
    "id": "text", "agent": "text", "instruction": "text", "state": "text",
    "created_at": "float8", "updated_at": "float8", "started_at": "float8",
    "finished_at": "float8", "step": "integer", "attempt": "integer", "result": "text",
    "error": "text", "error_kind": "text", "parent_id": "text", "created_by": "text",
    "input_tokens": "bigint", "output_tokens": "bigint", "tool_calls": "integer",
    "scratch": "text", "trace_id": "text", "cause_id": "text", "cost": "float8",
    "progress": "float8", "progress_note": "text", "owner": "text", "truncated": "boolean"}
"""The ``tasks`` columns' types (see :mod:`~wakeful.store.postgres.schema`), for arrays."""

_FENCES_BROKEN = (
    "SELECT count(*) FROM unnest($1::text[], $2::text[], $3::bigint[]) AS f(agent, owner, "
    "epoch) WHERE NOT EXISTS (SELECT 1 FROM agent_leases l WHERE l.agent = f.agent AND "
    "l.owner = f.owner AND l.epoch = f.epoch FOR SHARE)")
HAS_MESSAGE = "SELECT 1 FROM task_messages WHERE task_id = $1 AND seq = $2"
_HOLES = (
    "SELECT count(*) FROM unnest($1::text[], $2::integer[]) AS p(task_id, seq) WHERE NOT "
    "EXISTS (SELECT 1 FROM task_messages m WHERE m.task_id = p.task_id AND m.seq = p.seq)")
_MESSAGES = (
    "INSERT INTO task_messages (task_id, seq, data) SELECT * FROM unnest($1::text[], "
    "$2::integer[], $3::text[]) ON CONFLICT (task_id, seq) DO UPDATE SET data = "
    "excluded.data")
_AGENTS = (
    "INSERT INTO agents (name, state, reason, restarts, updated_at) SELECT * FROM "
    "unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::float8[]) ON CONFLICT "
    "(name) DO UPDATE SET state = excluded.state, reason = excluded.reason, restarts = "
    "excluded.restarts, updated_at = excluded.updated_at")


class StaleFences(Exception):
    """A write in the group carries a fence that no longer holds."""


class Holes(Exception):
    """A step in the group follows a message that is not stored (see ``queue_step``)."""


async def check_fences(conn: asyncpg.Connection, fences: Collection[Fence | None],
                       what: str) -> None:
    """Hold every lease named (to the commit) or raise StaleFences if one has moved."""
    named = {f for f in fences if f is not None}
    if not named:
        return
    agents, owners, epochs = zip(*((f.agent, f.owner, f.epoch) for f in named), strict=True)
    if await conn.fetchval(_FENCES_BROKEN, agents, owners, epochs):
        raise StaleFences(f"{len(fences)} {what}: a fence no longer holds")


@dataclass(slots=True, frozen=True)
class StepWrite:
    """One ``save_step`` with no mailbox changes: the task's new ``values`` for the
    columns ``names`` (the same for the whole group) and its message rows."""

    task_id: str
    names: tuple[str, ...]
    values: tuple[Any, ...]
    rows: Sequence[tuple[str, int, str]]
    fence: Fence | None

    @property
    def key(self) -> Hashable:
        return ("step", self.names)

    @property
    def subject(self) -> str:
        return self.task_id

    async def apply_many(self, conn: asyncpg.Connection, group: Sequence[Any]
                         ) -> list[Any]:
        steps: list[StepWrite] = list(group)
        await check_fences(conn, [s.fence for s in steps], "steps")
        follows = [(s.task_id, s.rows[0][1] - 1) for s in steps if s.rows and s.rows[0][1]]
        if follows and await conn.fetchval(_HOLES, *(list(c) for c in zip(*follows,
                                                                          strict=True))):
            raise Holes(f"{len(steps)} steps: one follows a message that is not stored")
        columns = ("id", *self.names)
        arrays = [[s.task_id for s in steps],
                  *([s.values[i] for s in steps] for i in range(len(self.names)))]
        casts = ", ".join(f"${i + 1}::{TASK_TYPES[c]}[]" for i, c in enumerate(columns))
        sets = ", ".join(f"{name} = v.{name}" for name in self.names)
        await conn.execute(f"UPDATE tasks SET {sets} FROM unnest({casts}) AS "
                           f"v({', '.join(columns)}) WHERE tasks.id = v.id", *arrays)
        rows = [row for s in steps for row in s.rows]
        if rows:
            await conn.execute(_MESSAGES, *(list(c) for c in zip(*rows, strict=True)))
        return [None] * len(steps)


@dataclass(slots=True, frozen=True)
class AgentWrite:
    """One ``save_agent``: the agent's row (name, state, reason, restarts, updated_at)."""

    values: tuple[str, str, str, int, float]
    fence: Fence | None

    @property
    def key(self) -> Hashable:
        return "agent"

    @property
    def subject(self) -> str:
        return "agent:" + self.values[0]

    async def apply_many(self, conn: asyncpg.Connection, group: Sequence[Any]
                         ) -> list[Any]:
        writes: list[AgentWrite] = list(group)
        await check_fences(conn, [w.fence for w in writes], "agent states")
        await conn.execute(_AGENTS, *(list(c) for c in zip(*(w.values for w in writes),
                                                               strict=True)))
        return [None] * len(writes)


_CLAIM = (
    "UPDATE tasks t SET state = 'running', owner = v.owner, updated_at = v.now, "
    "started_at = COALESCE(t.started_at, v.started) FROM unnest($1::text[], $2::text[], "
    "$3::float8[], $4::float8[]) AS v(id, owner, now, started), tasks old WHERE t.id = v.id "
    "AND old.id = v.id AND t.state = 'queued' RETURNING old.started_at IS NOT NULL, "
    + ", ".join(f"t.{c}" for c in TASK_COLUMNS))
"""Claims of many tasks in one statement. ``old`` is the row before the update (a table
in ``FROM`` sees the row as it was), so ``resumed`` says whether it had started before."""
_OPENING = (
    "INSERT INTO task_messages (task_id, seq, data) SELECT * FROM unnest($1::text[], "
    "$2::integer[], $3::text[]) ON CONFLICT DO NOTHING")


@dataclass(slots=True, frozen=True)
class ClaimWrite:
    """One ``claim_task``: the task, its claimant's fence, its opening messages (stored
    only on a fresh run). Claims of a batch are one fence check, one UPDATE and one
    INSERT, instead of three round trips each (a thousand tasks starting at once)."""

    task_id: str
    fence: Fence
    now: float
    started_at: float
    opening: Sequence[tuple[str, int, str]]

    @property
    def key(self) -> Hashable:
        return "claim"

    @property
    def subject(self) -> str:
        return self.task_id

    async def apply_many(self, conn: asyncpg.Connection, group: Sequence[Any]
                         ) -> list[Any]:
        claims: list[ClaimWrite] = list(group)
        await check_fences(conn, [c.fence for c in claims], "claims")
        won: dict[str, tuple[TaskRecord, bool]] = {}
        for row in await conn.fetch(_CLAIM, [c.task_id for c in claims],
                                    [c.fence.owner for c in claims],
                                    [c.now for c in claims], [c.started_at for c in claims]):
            record = task_from_row(tuple(row)[1:])
            won[record.id] = (record, bool(row[0]))
        rows = [r for c in claims if c.task_id in won and not won[c.task_id][1]
                for r in c.opening]
        if rows:
            await conn.execute(_OPENING, *(list(c) for c in zip(*rows, strict=True)))
        return [won.get(c.task_id) for c in claims]


@dataclass(slots=True, frozen=True)
class TaskInsert:
    """One ``create_task`` with no mailbox changes: its row's values, in
    ``TASK_COLUMNS`` order. A burst of new tasks is one INSERT."""

    task_id: str
    values: Sequence[Any]

    @property
    def key(self) -> Hashable:
        return "create"

    @property
    def subject(self) -> str:
        return self.task_id

    async def apply_many(self, conn: asyncpg.Connection, group: Sequence[Any]
                         ) -> list[Any]:
        inserts: list[TaskInsert] = list(group)
        casts = ", ".join(f"${i + 1}::{TASK_TYPES[c]}[]" for i, c in enumerate(TASK_COLUMNS))
        try:
            await conn.execute(f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}) SELECT * FROM "
                               f"unnest({casts})",
                               *([w.values[i] for w in inserts]
                                 for i in range(len(TASK_COLUMNS))))
        except asyncpg.UniqueViolationError as exc:  # applied one by one: that one fails
            raise ConflictError(f"{len(inserts)} new tasks: {exc}") from None
        return [None] * len(inserts)
