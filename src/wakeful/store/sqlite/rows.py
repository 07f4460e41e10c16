"""Tasks and events as SQLite rows: the column lists, and the conversions both ways
(shared by the store's writers and readers, and by the families that write a task or
an event in their own transaction)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields as dc_fields
from typing import Any

from wakeful.core.encoding import to_json
from wakeful.core.records import Event, TaskRecord
from wakeful.core.states import TaskState

_TASK_COLUMNS = [f.name for f in dc_fields(TaskRecord)]
_TASK_SELECT = "SELECT " + ", ".join(_TASK_COLUMNS) + " FROM tasks"
_EVENT_SELECT = ("SELECT id, ts, run_id, type, agent, task_id, correlation_id, causation_id, "
                 "data FROM events")


EVENT_INSERT = ("INSERT INTO events (ts, run_id, type, agent, task_id, correlation_id, "
                "causation_id, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def event_row(event: Event) -> tuple[Any, ...]:
    """An event as the values of :data:`EVENT_INSERT` (shared by writers of the log)."""
    return (event.ts, event.run_id, event.type, event.agent, event.task_id,
            event.correlation_id, event.causation_id, to_json(event.data))


_TASK_INSERT = (f"INSERT INTO tasks ({', '.join(_TASK_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in _TASK_COLUMNS)})")


def task_insert(record: TaskRecord) -> tuple[str, list[Any]]:
    """The statement that inserts ``record``, for writers that create a task in the same
    transaction as something else (a timer firing that starts it)."""
    return _TASK_INSERT, [getattr(record, name) for name in _TASK_COLUMNS]


def task_from_row(row: Sequence[Any]) -> TaskRecord:
    record = TaskRecord(**dict(zip(_TASK_COLUMNS, row, strict=True)))
    record.state = TaskState(record.state)
    record.truncated = bool(record.truncated)
    return record


def event_from_row(row: Sequence[Any]) -> Event:
    return Event(id=row[0], ts=row[1], run_id=row[2], type=row[3], agent=row[4],
                 task_id=row[5], correlation_id=row[6], causation_id=row[7],
                 data=json.loads(row[8]))
