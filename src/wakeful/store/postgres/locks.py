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
from wakeful.store.postgres.lock_sql import (
    LOCK_COLUMNS,
    RING,
    WAITER_COLUMNS,
    check_fence,
    lock_from_row,
    overlapping_locks,
    queued_ahead,
    reap_lapsed,
    ring_if,
    serialize,
    store_now,
    waiter_from_row,
)
from wakeful.store.postgres.schema import NOW
from wakeful.store.waitgraph import cycle_of, cycle_query

if TYPE_CHECKING:
    from wakeful.store.postgres.store import PostgresStore

T = TypeVar("T")
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
            await serialize(conn, resource)
            now = await store_now(conn)
            expired = await reap_lapsed(conn, now, resource)
            await ring_if(conn, bool(expired))
            mine: LockRow | None = None
            holders: list[LockRow] = []
            for lock in await overlapping_locks(conn, resource):
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
                    f"token = $3 RETURNING {LOCK_COLUMNS}",
                    max(mine.expires_at, now + lease_s), now, mine.token)
                return Acquired(lock_from_row(row), already_held=True, expired=expired)
            queued = [] if holders else await queued_ahead(conn, resource, mode, owner,
                                                            process, now, waiter_id)
            if holders or queued:
                return Blocked(holders, queued, expired, now)
            if waiter_id is not None:
                await conn.execute("DELETE FROM resource_waiters WHERE id = $1", waiter_id)
            row = await conn.fetchrow(
                "INSERT INTO resource_locks (resource, mode, holder_task, holder_agent, "
                "process, pid, acquired_at, renewed_at, expires_at) VALUES ($1, $2, $3, $4, "
                f"$5, $6, $7, $7, $8) RETURNING {LOCK_COLUMNS}",
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
            return Acquired(lock_from_row(row), already_held=False, expired=expired)

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
                f"expires_at > n.t RETURNING {LOCK_COLUMNS}", lease_s, token, owner.task_id)
            if row is None:
                raise StaleTokenError(f"cannot renew lock token {token}: its lease has "
                                      "already lapsed or it was released; acquire the lock "
                                      "again (you will get a new token)")
            return lock_from_row(row)

        result: LockRow = await self.store.write(op)
        return result

    async def release(self, token: int, owner: Owner) -> tuple[LockRow | None, float]:
        async def op(conn: asyncpg.Connection) -> tuple[LockRow | None, float]:
            row = await conn.fetchrow(
                f"DELETE FROM resource_locks WHERE token = $1 AND holder_task = $2 "
                f"RETURNING {LOCK_COLUMNS}, {NOW}", token, owner.task_id)
            if row is None:
                return None, await store_now(conn)
            return lock_from_row(row), float(row[10])

        result: tuple[LockRow | None, float] = await self.store.write(op, ring=RING)
        return result

    async def release_all(self, task_id: str) -> list[LockRow]:
        async def op(conn: asyncpg.Connection) -> list[Any]:
            await conn.execute("DELETE FROM lock_grants WHERE task_id = $1", task_id)
            rows: list[Any] = await conn.fetch(
                f"DELETE FROM resource_locks WHERE holder_task = $1 RETURNING {LOCK_COLUMNS}",
                task_id)
            return rows

        rows = await self.store.write(op, ring=RING)
        return sorted((lock_from_row(r) for r in rows), key=lambda lock: lock.token)

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
                await check_fence(conn, token, task_id, describe)
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
            expired = await reap_lapsed(conn, now)
            await ring_if(conn, bool(expired))
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
            return Check(now, await overlapping_locks(conn, resource),
                         await queued_ahead(conn, resource, mode, owner, process, now,
                                             waiter_id))

        return await self.store.read(query)

    async def wait_cycle(self, task_id: str) -> list[str]:
        rows = await self.store.fetch(cycle_query("$1", NOW, "strpos"), task_id)
        return cycle_of(rows[0][0] if rows else None)

    async def get_lock(self, token: int) -> LockRow | None:
        rows = await self.store.fetch(f"SELECT {LOCK_COLUMNS} FROM resource_locks WHERE "
                                      "token = $1", token)
        return lock_from_row(rows[0]) if rows else None

    async def locks_of(self, task_id: str) -> list[LockRow]:
        rows = await self.store.fetch(f"SELECT {LOCK_COLUMNS} FROM resource_locks WHERE "
                                      "holder_task = $1 ORDER BY token", task_id)
        return [lock_from_row(r) for r in rows]

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
                locks = [lock_from_row(r) for r in await conn.fetch(
                    f"SELECT {LOCK_COLUMNS} FROM resource_locks ORDER BY resource, token")]
                waiters = [waiter_from_row(r) for r in await conn.fetch(
                    f"SELECT {WAITER_COLUMNS} FROM resource_waiters WHERE alive_until > $1 "
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
                await check_fence(conn, fence[0], fence[1], f"kv:{key}")
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
