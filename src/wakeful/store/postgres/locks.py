"""PostgreSQL persistence of explicit locks, their waiters and the shared scratchpad
(a port of the SQLite family, held to the same contract).

Leases are judged by the database's clock (``NOW``, read in the deciding
transaction), which every worker on every machine shares. Tokens come from an identity
column, whose sequence only grows. Two workers deciding grants on overlapping resources
are serialized by transaction-scoped advisory locks taken before the conflict check:
shared on every folder above the resource, exclusive on the resource itself (intention
locks), so that ``file:a`` and ``file:a/b`` exclude each other while ``file:a/b`` and
``file:a/c`` are decided at once. The keys are (depth, hash), taken from the root down.

A grant is decided in a transaction of its own (on a pool connection, committed before
:meth:`PgLockStore.acquire` returns), not in the group commit: inside a batch, advisory
locks of several grants would be held together until the batch commits, in no common
order across workers (two workers' batches could deadlock on them), and every other
write of the worker would wait whenever a grant waits. Alone, a decision takes its
advisory locks in one global order, so grant decisions never deadlock each other.

A fenced write holds the lock's row ``FOR SHARE`` while it runs: a successor cannot be
granted (that needs the lapsed row deleted first) until the write is done.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from wakeful.core.locks import Acquired, Blocked, Check, KVEntry, LockRow, WaiterRow
from wakeful.core.resources import Mode, Owner, Resource, conflicts
from wakeful.errors import ResourceError, StaleTokenError
from wakeful.store.postgres.listener import channel
from wakeful.store.postgres.schema import NOW
from wakeful.store.waitgraph import cycle_of, cycle_query

if TYPE_CHECKING:
    from wakeful.store.postgres.store import PostgresStore

T = TypeVar("T")
_LOCK_COLUMNS = ("token, resource, mode, holder_task, holder_agent, process, pid, "
                 "acquired_at, renewed_at, expires_at")
_WAITER_COLUMNS = ("id, resource, mode, kind, holder_task, holder_agent, process, pid, "
                   "since, alive_until")
_ADVISORY_SPACE = 0x57AC0000  # first advisory key of the lock grants: this + depth
RING = ("locks",)


def _lock(row: Any) -> LockRow:
    return LockRow(token=row[0], resource=row[1], mode=Mode(row[2]),
                   owner=Owner(row[3], row[4]), process=row[5], pid=row[6],
                   acquired_at=row[7], renewed_at=row[8], expires_at=row[9])


def _waiter(row: Any) -> WaiterRow:
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


async def _serialize(conn: asyncpg.Connection, resource: Resource) -> None:
    """Advisory locks that make grant decisions on overlapping resources take turns."""
    above = resource.ancestors()
    keys = [(_ADVISORY_SPACE + depth, str(a)) for depth, a in enumerate(above)]
    if keys:
        await conn.execute("SELECT pg_advisory_xact_lock_shared(k, hashtext(r)) FROM "
                           "unnest($1::int[], $2::text[]) WITH ORDINALITY AS u(k, r, n) "
                           "ORDER BY n", [k for k, _ in keys], [r for _, r in keys])
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                       _ADVISORY_SPACE + len(above), str(resource))


async def _overlapping_locks(conn: asyncpg.Connection, resource: Resource) -> list[LockRow]:
    where, params = overlap_clause(resource, 1)
    rows = await conn.fetch(f"SELECT {_LOCK_COLUMNS} FROM resource_locks WHERE {where} "
                            "ORDER BY token", *params)
    return [_lock(r) for r in rows]


async def _queued_ahead(conn: asyncpg.Connection, resource: Resource, mode: Mode,
                        owner: Owner, process: str, now: float, before_id: int | None
                        ) -> list[WaiterRow]:
    """Live waits by other runtimes that conflict with this request and came first."""
    where, params = overlap_clause(resource, 1)
    params += [process, owner.task_id, now]
    n = len(params)
    sql = (f"SELECT {_WAITER_COLUMNS} FROM resource_waiters WHERE {where} "
           f"AND process != ${n - 2} AND holder_task != ${n - 1} AND alive_until > ${n}")
    if before_id is not None:
        params.append(before_id)
        sql += f" AND id < ${len(params)}"
    rows = [_waiter(r) for r in await conn.fetch(sql + " ORDER BY id", *params)]
    return [w for w in rows if conflicts(w.mode, mode)]


async def _reap(conn: asyncpg.Connection, now: float, resource: Resource | None = None
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
                                f"LOCKED) RETURNING {_LOCK_COLUMNS}", now)
    else:
        where, params = overlap_clause(resource, 2)
        await conn.execute(f"DELETE FROM resource_waiters WHERE alive_until <= $1 AND {where}",
                           now, *params)
        rows = await conn.fetch(f"DELETE FROM resource_locks WHERE expires_at <= $1 AND "
                                f"{where} RETURNING {_LOCK_COLUMNS}", now, *params)
    return sorted((_lock(r) for r in rows), key=lambda lock: lock.token)


async def _ring_if(conn: asyncpg.Connection, freed: bool) -> None:
    """Ring the ``locks`` doorbell with this transaction's commit if it freed a lock."""
    if freed:
        await conn.execute("SELECT pg_notify($1, '')", channel("locks"))


async def _check_fence(conn: asyncpg.Connection, token: int, task_id: str,
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


class PgLockStore:
    """The resource layer's view of a :class:`PostgresStore`."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def now(self) -> float:
        return await self.store.now()

    # explicit locks ------------------------------------------------------
    async def acquire(self, resource: Resource, mode: Mode, owner: Owner, *, process: str,
                      pid: int, lease_s: float, waiter_id: int | None) -> Acquired | Blocked:
        async def op(conn: asyncpg.Connection) -> Acquired | Blocked:
            await _serialize(conn, resource)
            now = await store_now(conn)
            expired = await _reap(conn, now, resource)
            await _ring_if(conn, bool(expired))
            mine: LockRow | None = None
            holders: list[LockRow] = []
            for lock in await _overlapping_locks(conn, resource):
                if lock.owner.task_id == owner.task_id:
                    if lock.resource == str(resource):
                        mine = lock
                elif conflicts(lock.mode, mode):
                    holders.append(lock)
            if mine is not None:
                if mode is Mode.WRITE and mine.mode is Mode.READ:
                    raise ResourceError(
                        f"{owner} holds a read lock on {resource} (token {mine.token}) and "
                        "asked for a write lock; release the read lock first, then acquire "
                        "the write lock")
                row = await conn.fetchrow(
                    f"UPDATE resource_locks SET expires_at = $1, renewed_at = $2 WHERE "
                    f"token = $3 RETURNING {_LOCK_COLUMNS}",
                    max(mine.expires_at, now + lease_s), now, mine.token)
                return Acquired(_lock(row), already_held=True, expired=expired)
            queued = [] if holders else await _queued_ahead(conn, resource, mode, owner,
                                                            process, now, waiter_id)
            if holders or queued:
                return Blocked(holders, queued, expired, now)
            if waiter_id is not None:
                await conn.execute("DELETE FROM resource_waiters WHERE id = $1", waiter_id)
            row = await conn.fetchrow(
                "INSERT INTO resource_locks (resource, mode, holder_task, holder_agent, "
                "process, pid, acquired_at, renewed_at, expires_at) VALUES ($1, $2, $3, $4, "
                f"$5, $6, $7, $7, $8) RETURNING {_LOCK_COLUMNS}",
                str(resource), mode.value, owner.task_id, owner.agent, process, pid, now,
                now + lease_s)
            assert row is not None
            # Which task holds which token outlives the lock row (and this process):
            # the task's later writes are fenced against it, even after a restart.
            await conn.execute(
                "INSERT INTO lock_grants (task_id, resource, token, granted_at) VALUES ($1, "
                "$2, $3, $4) ON CONFLICT (task_id, resource) DO UPDATE SET token = "
                "GREATEST(lock_grants.token, excluded.token), granted_at = excluded.granted_at",
                owner.task_id, str(resource), row["token"], now)
            return Acquired(_lock(row), already_held=False, expired=expired)

        async def decide(conn: asyncpg.Connection) -> Acquired | Blocked:
            async with conn.transaction():
                return await op(conn)

        # Not rung: waiters re-check by acquiring, and a bell per attempt would have
        # them wake each other in a loop; a grant that reaped lapsed leases rings alone.
        return await self.store.read(decide)

    async def renew(self, token: int, owner: Owner, lease_s: float) -> LockRow:
        async def op(conn: asyncpg.Connection) -> LockRow:
            row = await conn.fetchrow(
                "UPDATE resource_locks SET expires_at = n.t + $1, renewed_at = n.t FROM "
                f"(SELECT {NOW} AS t) AS n WHERE token = $2 AND holder_task = $3 AND "
                f"expires_at > n.t RETURNING {_LOCK_COLUMNS}", lease_s, token, owner.task_id)
            if row is None:
                raise StaleTokenError(f"cannot renew lock token {token}: its lease has "
                                      "already lapsed or it was released; acquire the lock "
                                      "again (you will get a new token)")
            return _lock(row)

        result: LockRow = await self.store.write(op)
        return result

    async def release(self, token: int, owner: Owner) -> tuple[LockRow | None, float]:
        async def op(conn: asyncpg.Connection) -> tuple[LockRow | None, float]:
            row = await conn.fetchrow(
                f"DELETE FROM resource_locks WHERE token = $1 AND holder_task = $2 "
                f"RETURNING {_LOCK_COLUMNS}, {NOW}", token, owner.task_id)
            if row is None:
                return None, await store_now(conn)
            return _lock(row), float(row[10])

        result: tuple[LockRow | None, float] = await self.store.write(op, ring=RING)
        return result

    async def release_all(self, task_id: str) -> list[LockRow]:
        async def op(conn: asyncpg.Connection) -> list[Any]:
            await conn.execute("DELETE FROM lock_grants WHERE task_id = $1", task_id)
            rows: list[Any] = await conn.fetch(
                f"DELETE FROM resource_locks WHERE holder_task = $1 RETURNING {_LOCK_COLUMNS}",
                task_id)
            return rows

        rows = await self.store.write(op, ring=RING)
        return sorted((_lock(r) for r in rows), key=lambda lock: lock.token)

    async def grants_of(self, task_id: str) -> list[tuple[str, int]]:
        rows = await self.store.fetch("SELECT resource, token FROM lock_grants WHERE "
                                      "task_id = $1", task_id)
        return [(r[0], int(r[1])) for r in rows]

    async def fenced(self, token: int, task_id: str, write: Callable[[], T],
                     describe: str) -> T:
        """Run ``write`` inside a transaction that first checks lock ``token`` is still
        ``task_id``'s and live, and holds its row ``FOR SHARE`` until ``write`` is done:
        no successor can be granted the lock in between (a grant must first delete the
        lapsed row, which waits for this transaction). The transaction writes nothing, so
        it runs on a read connection, beside the group commit: the batch of other writes
        never waits for this one's file I/O, and is never replayed with it."""
        async def run(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                await _check_fence(conn, token, task_id, describe)
                return await asyncio.to_thread(write)

        result: T = await self.store.read(run)
        return result

    async def reap(self, waiter_ids: Sequence[int], keep_alive_s: float) -> list[LockRow]:
        ids = list(waiter_ids)

        async def op(conn: asyncpg.Connection) -> list[LockRow]:
            now = await store_now(conn)
            if ids:
                await conn.execute("UPDATE resource_waiters SET alive_until = $1 WHERE "
                                   "id = ANY($2::bigint[])", now + keep_alive_s, ids)
            expired = await _reap(conn, now)
            await _ring_if(conn, bool(expired))
            return expired

        result: list[LockRow] = await self.store.write(op)
        return result

    async def leave_line(self, waiter_id: int) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM resource_waiters WHERE id = $1", waiter_id)

        await self.store.write(op, ring=RING)

    async def join_line(self, resource: Resource, mode: Mode, owner: Owner, *, kind: str,
                        process: str, pid: int, keep_alive_s: float) -> int:
        async def op(conn: asyncpg.Connection) -> int:
            place: int = await conn.fetchval(
                "INSERT INTO resource_waiters (resource, mode, kind, holder_task, "
                "holder_agent, process, pid, since, alive_until) SELECT $1, $2, $3, $4, $5, "
                f"$6, $7, n.t, n.t + $8 FROM (SELECT {NOW} AS t) AS n RETURNING id",
                str(resource), mode.value, kind, owner.task_id, owner.agent, process, pid,
                keep_alive_s)
            return place

        result: int = await self.store.write(op)
        return result

    async def forget_process(self, process: str) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM resource_waiters WHERE process = $1", process)

        await self.store.write(op, ring=RING)

    # what an operation must respect --------------------------------------
    async def check(self, resource: Resource, mode: Mode, owner: Owner, process: str,
                    waiter_id: int | None) -> Check:
        async def query(conn: asyncpg.Connection) -> Check:
            now = await store_now(conn)
            return Check(now, await _overlapping_locks(conn, resource),
                         await _queued_ahead(conn, resource, mode, owner, process, now,
                                             waiter_id))

        return await self.store.read(query)

    async def wait_cycle(self, task_id: str) -> list[str]:
        rows = await self.store.fetch(cycle_query("$1", NOW, "strpos"), task_id)
        return cycle_of(rows[0][0] if rows else None)

    async def get_lock(self, token: int) -> LockRow | None:
        rows = await self.store.fetch(f"SELECT {_LOCK_COLUMNS} FROM resource_locks WHERE "
                                      "token = $1", token)
        return _lock(rows[0]) if rows else None

    async def locks_of(self, task_id: str) -> list[LockRow]:
        rows = await self.store.fetch(f"SELECT {_LOCK_COLUMNS} FROM resource_locks WHERE "
                                      "holder_task = $1 ORDER BY token", task_id)
        return [_lock(r) for r in rows]

    async def last_token(self) -> int:
        rows = await self.store.fetch(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('resource_locks', "
            "'token')::regclass)")
        return int(rows[0][0] or 0)

    async def snapshot(self) -> tuple[float, list[LockRow], list[WaiterRow]]:
        async def query(conn: asyncpg.Connection) -> tuple[float, list[LockRow],
                                                            list[WaiterRow]]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                now = await store_now(conn)
                locks = [_lock(r) for r in await conn.fetch(
                    f"SELECT {_LOCK_COLUMNS} FROM resource_locks ORDER BY resource, token")]
                waiters = [_waiter(r) for r in await conn.fetch(
                    f"SELECT {_WAITER_COLUMNS} FROM resource_waiters WHERE alive_until > $1 "
                    "ORDER BY id", now)]
            return now, locks, waiters

        return await self.store.read(query)

    async def recent_deadlocks(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last deadlocks recorded in the event log (newest first)."""
        rows = await self.store.fetch("SELECT ts, agent, task_id, data FROM events WHERE "
                                      "type = 'resource.deadlock' ORDER BY id DESC LIMIT $1",
                                      limit)
        return [{"ts": r[0], "agent": r[1], "task_id": r[2], **json.loads(r[3])} for r in rows]

    # the shared scratchpad ------------------------------------------------
    async def kv_get(self, key: str) -> KVEntry | None:
        rows = await self.store.fetch("SELECT key, value, version, updated_at, updated_by "
                                      "FROM kv_entries WHERE key = $1", key)
        if not rows:
            return None
        row = rows[0]
        return KVEntry(row[0], json.loads(row[1]), row[2], row[3], row[4])

    async def kv_set(self, key: str, value: object, updated_by: str,
                     fence: tuple[int, str] | None = None) -> KVEntry:
        encoded = json.dumps(value)

        async def op(conn: asyncpg.Connection) -> KVEntry:
            if fence is not None:
                await _check_fence(conn, fence[0], fence[1], f"kv:{key}")
            row = await conn.fetchrow(
                "INSERT INTO kv_entries (key, value, version, updated_at, updated_by) "
                f"VALUES ($1, $2, 1, {NOW}, $3) ON CONFLICT (key) DO UPDATE SET value = "
                "excluded.value, version = kv_entries.version + 1, updated_at = "
                "excluded.updated_at, updated_by = excluded.updated_by RETURNING version, "
                "updated_at", key, encoded, updated_by)
            assert row is not None
            return KVEntry(key, value, row[0], row[1], updated_by)

        result: KVEntry = await self.store.write(op)
        return result

    async def kv_delete(self, key: str) -> bool:
        async def op(conn: asyncpg.Connection) -> bool:
            status: str = await conn.execute("DELETE FROM kv_entries WHERE key = $1", key)
            return not status.endswith(" 0")

        deleted: bool = await self.store.write(op)
        return deleted
