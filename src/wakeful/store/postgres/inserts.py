"""Set-based inserts shared by the PostgreSQL families: rows go in as arrays through
``unnest``, so a burst of a thousand rows is one statement, not a thousand round trips."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from wakeful.core.encoding import to_json
from wakeful.core.records import Event

_EVENT_INSERT = (
    "INSERT INTO events (id, ts, run_id, type, agent, task_id, correlation_id, "
    "causation_id, data) SELECT * FROM unnest($1::bigint[], $2::float8[], $3::text[], "
    "$4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])")


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (the arguments of an ``unnest`` insert)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


async def insert_events(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    """Append ``events`` to the log in the caller's transaction, in order, and set their
    ids (commit-ordered positions, as the store's own event writes get)."""
    if not events:
        return
    ids = sorted(r[0] for r in await conn.fetch(
        "SELECT wakeful_pos() FROM generate_series(1, $1)", len(events)))
    rows = [(event_id, e.ts, e.run_id, e.type, e.agent, e.task_id, e.correlation_id,
             e.causation_id, to_json(e.data))
            for event_id, e in zip(ids, events, strict=True)]
    await conn.execute(_EVENT_INSERT, *columns(rows, 9))
    for event, event_id in zip(events, ids, strict=True):
        event.id = event_id
