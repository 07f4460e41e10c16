"""The statements PostgreSQL lock grants are decided with (see
:mod:`wakeful.store.postgres.locks` for why grants are serialized as they are): row
mapping, the advisory locks that order deciding transactions, the overlap and
first-come-first-served queries, reaping lapsed leases, and the fencing check.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from wakeful.core.locks import LockRow, WaiterRow
from wakeful.core.resources import Mode, Owner, Resource, conflicts
from wakeful.errors import StaleTokenError
from wakeful.store.postgres.listener import channel
from wakeful.store.postgres.schema import NOW

LOCK_COLUMNS = ("token, resource, mode, holder_task, holder_agent, process, pid, "
                 "acquired_at, renewed_at, expires_at")
WAITER_COLUMNS = ("id, resource, mode, kind, holder_task, holder_agent, process, pid, "
                   "since, alive_until")
ADVISORY_SPACE = 0x57AC0000  # first advisory key of the lock grants: this + depth
RING = ("locks",)


def lock_from_row(row: Any) -> LockRow:
    return LockRow(token=row[0], resource=row[1], mode=Mode(row[2]),
                   owner=Owner(row[3], row[4]), process=row[5], pid=row[6],
                   acquired_at=row[7], renewed_at=row[8], expires_at=row[9])


def waiter_from_row(row: Any) -> WaiterRow:
    return WaiterRow(id=row[0], resource=row[1], mode=Mode(row[2]), kind=row[3],
                     owner=Owner(row[4], row[5]), process=row[6], pid=row[7],
                     since=row[8], alive_until=row[9])


async def store_now(conn: asyncpg.Connection) -> float:
    now: float = await conn.fetchval(f"SELECT {NOW}")
    return now


def overlap_clause(resource: Resource, first: int) -> tuple[str, list[Any]]:
    """SQL matching ``resource``, the folders above it and everything inside it
    (parameters numbered from ``first``). The column is ``COLLATE "C"``, so the range
    is in code-point order whatever the database's collation."""
    names = [str(resource), *(str(a) for a in resource.ancestors())]
    sql = f"resource = ANY(${first}::text[])"
    params: list[Any] = [names]
    bounds = resource.descendant_range()
    if bounds is not None:
        sql = f"({sql} OR (resource > ${first + 1} AND resource < ${first + 2}))"
        params += list(bounds)
    return sql, params


async def serialize(conn: asyncpg.Connection, resource: Resource) -> None:
    """Advisory locks that make grant decisions on overlapping resources take turns."""
    above = resource.ancestors()
    keys = [(ADVISORY_SPACE + depth, str(a)) for depth, a in enumerate(above)]
    if keys:
        await conn.execute("SELECT pg_advisory_xact_lock_shared(k, hashtext(r)) FROM "
                           "unnest($1::int[], $2::text[]) WITH ORDINALITY AS u(k, r, n) "
                           "ORDER BY n", [k for k, _ in keys], [r for _, r in keys])
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                       ADVISORY_SPACE + len(above), str(resource))


async def overlapping_locks(conn: asyncpg.Connection, resource: Resource) -> list[LockRow]:
    where, params = overlap_clause(resource, 1)
    rows = await conn.fetch(f"SELECT {LOCK_COLUMNS} FROM resource_locks WHERE {where} "
                            "ORDER BY token", *params)
    return [lock_from_row(r) for r in rows]


async def queued_ahead(conn: asyncpg.Connection, resource: Resource, mode: Mode,
                        owner: Owner, process: str, now: float, before_id: int | None
                        ) -> list[WaiterRow]:
    """Live waits by other runtimes that conflict with this request and came first."""
    where, params = overlap_clause(resource, 1)
    params += [process, owner.task_id, now]
    n = len(params)
    sql = (f"SELECT {WAITER_COLUMNS} FROM resource_waiters WHERE {where} "
           f"AND process != ${n - 2} AND holder_task != ${n - 1} AND alive_until > ${n}")
    if before_id is not None:
        params.append(before_id)
        sql += f" AND id < ${len(params)}"
    rows = [waiter_from_row(r) for r in await conn.fetch(sql + " ORDER BY id", *params)]
    return [w for w in rows if conflicts(w.mode, mode)]


async def reap_lapsed(conn: asyncpg.Connection, now: float, resource: Resource | None = None
                ) -> list[LockRow]:
    """Delete lapsed leases (over ``resource``, or everywhere) and dead waits.

    Everywhere (the periodic reap): rows another transaction holds are skipped, so
    workers reaping at once never wait on each other. Over a resource (a grant): the
    delete waits for such a row, which may be a fenced write still running on it."""
    if resource is None:
        await conn.execute("DELETE FROM resource_waiters WHERE id IN (SELECT id FROM "
                           "resource_waiters WHERE alive_until <= $1 FOR UPDATE SKIP LOCKED)",
                           now)
        rows = await conn.fetch(f"DELETE FROM resource_locks WHERE token IN (SELECT token "
                                "FROM resource_locks WHERE expires_at <= $1 FOR UPDATE SKIP "
                                f"LOCKED) RETURNING {LOCK_COLUMNS}", now)
    else:
        where, params = overlap_clause(resource, 2)
        await conn.execute(f"DELETE FROM resource_waiters WHERE alive_until <= $1 AND {where}",
                           now, *params)
        rows = await conn.fetch(f"DELETE FROM resource_locks WHERE expires_at <= $1 AND "
                                f"{where} RETURNING {LOCK_COLUMNS}", now, *params)
    return sorted((lock_from_row(r) for r in rows), key=lambda lock: lock.token)


async def ring_if(conn: asyncpg.Connection, freed: bool) -> None:
    """Ring the ``locks`` doorbell with this transaction's commit if it freed a lock."""
    if freed:
        await conn.execute("SELECT pg_notify($1, '')", channel("locks"))


async def check_fence(conn: asyncpg.Connection, token: int, task_id: str,
                       describe: str) -> None:
    """StaleTokenError unless lock ``token`` is ``task_id``'s and live; the row stays
    locked ``FOR SHARE`` until the caller's transaction ends."""
    row = await conn.fetchrow(f"SELECT holder_task, expires_at, {NOW} FROM resource_locks "
                              "WHERE token = $1 FOR SHARE", token)
    if row is None or row[0] != task_id or row[1] <= row[2]:
        why = ("that lock no longer exists" if row is None else
               "it belongs to another task" if row[0] != task_id else
               f"its lease expired {row[2] - row[1]:.1f} s ago")
        raise StaleTokenError(f"fencing token {token} is stale for {describe}: {why}. The "
                              "write was refused; acquire the lock again and use its new token")
