"""Tasks and events as PostgreSQL rows: column lists, placeholders and conversions
(shared by the store and by the families that write a task in their own transaction,
such as a timer firing that starts one)."""

from __future__ import annotations

from typing import Any

from wakeful.core.records import Event, TaskRecord
from wakeful.store.sqlite.rows import _TASK_COLUMNS
from wakeful.store.sqlite.rows import event_from_row as _event_from_row
from wakeful.store.sqlite.rows import task_from_row as _task_from_row

TASK_COLUMNS = _TASK_COLUMNS
TASK_SELECT = "SELECT " + ", ".join(TASK_COLUMNS) + " FROM tasks"
EVENT_SELECT = ("SELECT id, ts, run_id, type, agent, task_id, correlation_id, causation_id, "
                "data FROM events")
_TASK_INSERT = (f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}) "
                f"VALUES ({', '.join(f'${i + 1}' for i in range(len(TASK_COLUMNS)))})")
FENCE_SQL = ("EXISTS (SELECT 1 FROM agent_leases WHERE agent = ${0} AND owner = ${1} "
             "AND epoch = ${2} FOR SHARE)")
"""The fence of a write, in the write's own statement. ``FOR SHARE`` holds the lease row
until the write commits, so a takeover (which updates that row) waits for it: a fenced
write commits before the lease changes hands, or is refused after."""


def fence_sql(first: int) -> str:
    """:data:`FENCE_SQL` with its three parameters numbered from ``first``."""
    return FENCE_SQL.format(first, first + 1, first + 2)


def marks(first: int, count: int) -> str:
    """``$first, ..., $first+count-1``."""
    return ", ".join(f"${first + i}" for i in range(count))


def task_from_row(row: Any) -> TaskRecord:
    """A task from an asyncpg record (the SQLite store's conversion, on a tuple)."""
    return _task_from_row(tuple(row))


def event_from_row(row: Any) -> Event:
    return _event_from_row(tuple(row))


def task_insert(record: TaskRecord) -> tuple[str, list[Any]]:
    values = [getattr(record, name) for name in TASK_COLUMNS]
    values[TASK_COLUMNS.index("state")] = record.state.value
    return _TASK_INSERT, values


__all__ = ["EVENT_SELECT", "TASK_COLUMNS", "TASK_SELECT", "event_from_row", "fence_sql",
           "marks", "task_from_row", "task_insert"]
