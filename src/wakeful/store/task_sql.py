"""The UPDATE of a task's fields, in either SQL dialect: both backends write a task the
same way, and every step writes one, so each shape is made once and kept."""

from __future__ import annotations

import dataclasses
import functools

from wakeful.core.records import TaskRecord

TASK_FIELDS = frozenset(f.name for f in dataclasses.fields(TaskRecord))


@functools.lru_cache(maxsize=512)
def task_update_sql(names: tuple[str, ...], fence: str | None, numbered: bool) -> str:
    """``UPDATE tasks SET name = ?, ... WHERE id = ?`` (``$1, $2...`` if ``numbered``),
    and ``AND fence`` when the write is fenced (its three placeholders ``{0} {1} {2}``
    numbered after the id's, if ``numbered``). Unknown field names are refused."""
    unknown = set(names) - TASK_FIELDS
    if unknown:
        raise ValueError(f"unknown task fields: {sorted(unknown)}")

    def mark(i: int) -> str:
        return f"${i}" if numbered else "?"

    assignments = ", ".join(f"{name} = {mark(i + 1)}" for i, name in enumerate(names))
    sql = f"UPDATE tasks SET {assignments} WHERE id = {mark(len(names) + 1)}"
    if fence is None:
        return sql
    first = len(names) + 2
    return sql + " AND " + (fence.format(first, first + 1, first + 2) if numbered else fence)
