"""SQLite persistence of explicit locks, their waiters and the shared scratchpad.

A held lock is a row: resource, mode, holder (task and agent), lease expiry and
fencing token. The token is the row id of an ``AUTOINCREMENT`` table, which SQLite
guarantees is larger than every id the table has ever held, so tokens only grow,
across restarts too. Leases are judged by the store's clock (``julianday('now')`` in
the same statement that reads them), never by the holder's, which is what makes a
crashed holder's lease lapse: nothing needs to hear from it.

Each operation is one function on a ``sqlite3.Connection`` run through
``store.write`` (one savepoint in the next group commit) or ``store.read``, so a
grant's check and its insert are one atomic step even with other processes on the
same file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from wakeful.core.locks import (
    Acquired,
    Blocked,
    Check,
    KVEntry,
    LockRow,
    WaiterRow,
)
from wakeful.core.resources import Mode, Owner, Resource, conflicts
from wakeful.errors import ResourceError, StaleTokenError
from wakeful.store.sqlite import SQLiteStore
from wakeful.store.waitgraph import cycle_of, cycle_query

NOW_SQL = "SELECT (julianday('now') - 2440587.5) * 86400.0"
_LOCK_COLUMNS = ("token, resource, mode, holder_task, holder_agent, process, pid, "
                 "acquired_at, renewed_at, expires_at")
_WAITER_COLUMNS = ("id, resource, mode, kind, holder_task, holder_agent, process, pid, "
                   "since, alive_until")

T = TypeVar("T")


def store_now(conn: sqlite3.Connection) -> float:
    now: float = conn.execute(NOW_SQL).fetchone()[0]
    return now


def _lock(row: Sequence[Any]) -> LockRow:
    return LockRow(token=row[0], resource=row[1], mode=Mode(row[2]),
                   owner=Owner(row[3], row[4]), process=row[5], pid=row[6],
                   acquired_at=row[7], renewed_at=row[8], expires_at=row[9])


def _waiter(row: Sequence[Any]) -> WaiterRow:
    return WaiterRow(id=row[0], resource=row[1], mode=Mode(row[2]), kind=row[3],
                     owner=Owner(row[4], row[5]), process=row[6], pid=row[7],
                     since=row[8], alive_until=row[9])


def overlap_clause(resource: Resource) -> tuple[str, list[Any]]:
    """SQL matching ``resource``, the folders above it and everything inside it."""
    names = [str(resource), *(str(a) for a in resource.ancestors())]
    sql = f"resource IN ({', '.join('?' for _ in names)})"
    params: list[Any] = list(names)
    bounds = resource.descendant_range()
    if bounds is not None:
        sql = f"({sql} OR (resource > ? AND resource < ?))"
        params += list(bounds)
    return sql, params


def _overlapping_locks(conn: sqlite3.Connection, resource: Resource) -> list[LockRow]:
    where, params = overlap_clause(resource)
    rows = conn.execute(f"SELECT {_LOCK_COLUMNS} FROM resource_locks WHERE {where} "
                        "ORDER BY token", params).fetchall()
    return [_lock(r) for r in rows]


def _queued_ahead(conn: sqlite3.Connection, resource: Resource, mode: Mode, owner: Owner,
                  process: str, now: float, before_id: int | None) -> list[WaiterRow]:
    """Live waits by other runtimes that conflict with this request and came first."""
    where, params = overlap_clause(resource)
    sql = (f"SELECT {_WAITER_COLUMNS} FROM resource_waiters WHERE {where} "
           "AND process != ? AND holder_task != ? AND alive_until > ?")
    params += [process, owner.task_id, now]
    if before_id is not None:
        sql += " AND id < ?"
        params.append(before_id)
    rows = [_waiter(r) for r in conn.execute(sql + " ORDER BY id", params).fetchall()]
    return [w for w in rows if conflicts(w.mode, mode)]


def _reap(conn: sqlite3.Connection, now: float) -> list[LockRow]:
    conn.execute("DELETE FROM resource_waiters WHERE alive_until <= ?", (now,))
    rows = conn.execute(f"DELETE FROM resource_locks WHERE expires_at <= ? "
                        f"RETURNING {_LOCK_COLUMNS}", (now,)).fetchall()
    return sorted((_lock(r) for r in rows), key=lambda lock: lock.token)


def _check_fence(conn: sqlite3.Connection, token: int, task_id: str, describe: str) -> None:
    now = store_now(conn)
    row = conn.execute("SELECT holder_task, expires_at FROM resource_locks WHERE token = ?",
                       (token,)).fetchone()
    if row is None or row[0] != task_id or row[1] <= now:
        why = ("that lock no longer exists" if row is None else
               "it belongs to another task" if row[0] != task_id else
               f"its lease expired {now - row[1]:.1f} s ago")
        raise StaleTokenError(f"fencing token {token} is stale for {describe}: {why}. The "
                              "write was refused; acquire the lock again and use its new token")


class SQLiteLockStore:
    """The resource layer's view of a :class:`SQLiteStore`."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def now(self) -> float:
        return await self.store.read(store_now)

    # explicit locks ------------------------------------------------------
    async def acquire(self, resource: Resource, mode: Mode, owner: Owner, *, process: str,
                      pid: int, lease_s: float, waiter_id: int | None) -> Acquired | Blocked:
        """Grant the lock now, or say what is in the way. ``waiter_id`` is this
        request's place in line (:meth:`join_line`), if it has one."""

        def op(conn: sqlite3.Connection) -> Acquired | Blocked:
            now = store_now(conn)
            expired = _reap(conn, now)
            mine: LockRow | None = None
            holders: list[LockRow] = []
            for lock in _overlapping_locks(conn, resource):
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
                row = conn.execute(
                    f"UPDATE resource_locks SET expires_at = ?, renewed_at = ? WHERE token = ? "
                    f"RETURNING {_LOCK_COLUMNS}",
                    (max(mine.expires_at, now + lease_s), now, mine.token)).fetchone()
                return Acquired(_lock(row), already_held=True, expired=expired)
            queued = [] if holders else _queued_ahead(conn, resource, mode, owner, process,
                                                      now, waiter_id)
            if holders or queued:
                return Blocked(holders, queued, expired, now)
            if waiter_id is not None:
                conn.execute("DELETE FROM resource_waiters WHERE id = ?", (waiter_id,))
            row = conn.execute(
                "INSERT INTO resource_locks (resource, mode, holder_task, holder_agent, "
                "process, pid, acquired_at, renewed_at, expires_at) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_LOCK_COLUMNS}",
                (str(resource), mode.value, owner.task_id, owner.agent, process, pid,
                 now, now, now + lease_s)).fetchone()
            # Which task holds which token outlives the lock row (and this process):
            # the task's later writes are fenced against it, even after a restart.
            conn.execute("INSERT INTO lock_grants (task_id, resource, token, granted_at) "
                         "VALUES (?, ?, ?, ?) ON CONFLICT(task_id, resource) DO UPDATE SET "
                         "token = MAX(token, excluded.token), granted_at = excluded.granted_at",
                         (owner.task_id, str(resource), row[0], now))
            return Acquired(_lock(row), already_held=False, expired=expired)

        result: Acquired | Blocked = await self.store.write(op)
        return result

    async def renew(self, token: int, owner: Owner, lease_s: float) -> LockRow:
        def op(conn: sqlite3.Connection) -> LockRow:
            now = store_now(conn)
            row = conn.execute(
                f"UPDATE resource_locks SET expires_at = ?, renewed_at = ? WHERE token = ? "
                f"AND holder_task = ? AND expires_at > ? RETURNING {_LOCK_COLUMNS}",
                (now + lease_s, now, token, owner.task_id, now)).fetchone()
            if row is None:
                raise StaleTokenError(f"cannot renew lock token {token}: its lease has "
                                      "already lapsed or it was released; acquire the lock "
                                      "again (you will get a new token)")
            return _lock(row)

        result: LockRow = await self.store.write(op)
        return result

    async def release(self, token: int, owner: Owner) -> tuple[LockRow | None, float]:
        """Delete the lock ``token`` of ``owner``; return it (or None) and the store time."""

        def op(conn: sqlite3.Connection) -> tuple[LockRow | None, float]:
            now = store_now(conn)
            row = conn.execute(f"DELETE FROM resource_locks WHERE token = ? AND holder_task = ? "
                               f"RETURNING {_LOCK_COLUMNS}", (token, owner.task_id)).fetchone()
            return (_lock(row) if row else None), now

        result: tuple[LockRow | None, float] = await self.store.write(op)
        return result

    async def release_all(self, task_id: str) -> list[LockRow]:
        """A task ended: drop its locks and what it was granted."""
        def op(conn: sqlite3.Connection) -> list[Any]:
            conn.execute("DELETE FROM lock_grants WHERE task_id = ?", (task_id,))
            return conn.execute(f"DELETE FROM resource_locks WHERE holder_task = ? "
                                f"RETURNING {_LOCK_COLUMNS}", (task_id,)).fetchall()

        rows = await self.store.write(op)
        return sorted((_lock(r) for r in rows), key=lambda lock: lock.token)

    async def grants_of(self, task_id: str) -> list[tuple[str, int]]:
        """(resource, token) of every lock ``task_id`` was granted and still counts on."""
        rows = await self.store.read(lambda c: c.execute(
            "SELECT resource, token FROM lock_grants WHERE task_id = ?", (task_id,)).fetchall())
        return [(r[0], r[1]) for r in rows]

    async def fenced(self, token: int, task_id: str, write: Callable[[], T],
                     describe: str) -> T:
        """Run ``write`` inside a store transaction that first checks lock ``token`` is
        still ``task_id``'s and live: no successor can be granted the lock between the
        check and the write (the transaction holds the store's write lock)."""
        def op(conn: sqlite3.Connection) -> T:
            _check_fence(conn, token, task_id, describe)
            return write()

        result: T = await self.store.write(op)
        return result

    async def reap(self, waiter_ids: Sequence[int], keep_alive_s: float) -> list[LockRow]:
        """Remove lapsed leases and dead waits; keep this runtime's waits alive."""
        ids = list(waiter_ids)

        def op(conn: sqlite3.Connection) -> list[LockRow]:
            now = store_now(conn)
            if ids:
                conn.execute("UPDATE resource_waiters SET alive_until = ? WHERE id IN "
                             f"({', '.join('?' for _ in ids)})", [now + keep_alive_s, *ids])
            return _reap(conn, now)

        result: list[LockRow] = await self.store.write(op)
        return result

    async def leave_line(self, waiter_id: int) -> None:
        await self.store.write(lambda c: c.execute(
            "DELETE FROM resource_waiters WHERE id = ?", (waiter_id,)))

    async def join_line(self, resource: Resource, mode: Mode, owner: Owner, *, kind: str,
                        process: str, pid: int, keep_alive_s: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            now = store_now(conn)
            place: int = conn.execute(
                "INSERT INTO resource_waiters (resource, mode, kind, holder_task, holder_agent, "
                "process, pid, since, alive_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (str(resource), mode.value, kind, owner.task_id, owner.agent, process, pid,
                 now, now + keep_alive_s)).lastrowid or 0
            return place

        result: int = await self.store.write(op)
        return result

    async def forget_process(self, process: str) -> None:
        await self.store.write(lambda c: c.execute(
            "DELETE FROM resource_waiters WHERE process = ?", (process,)))

    # what an operation must respect --------------------------------------
    async def check(self, resource: Resource, mode: Mode, owner: Owner, process: str,
                    waiter_id: int | None) -> Check:
        def query(conn: sqlite3.Connection) -> Check:
            now = store_now(conn)
            return Check(now, _overlapping_locks(conn, resource),
                         _queued_ahead(conn, resource, mode, owner, process, now, waiter_id))

        return await self.store.read(query)

    async def wait_cycle(self, task_id: str) -> list[str]:
        sql = cycle_query(":task", "(julianday('now') - 2440587.5) * 86400.0", "instr")
        row = await self.store.read(lambda c: c.execute(sql, {"task": task_id}).fetchone())
        return cycle_of(row[0] if row else None)

    async def get_lock(self, token: int) -> LockRow | None:
        row = await self.store.read(lambda c: c.execute(
            f"SELECT {_LOCK_COLUMNS} FROM resource_locks WHERE token = ?", (token,)).fetchone())
        return _lock(row) if row else None

    async def locks_of(self, task_id: str) -> list[LockRow]:
        rows = await self.store.read(lambda c: c.execute(
            f"SELECT {_LOCK_COLUMNS} FROM resource_locks WHERE holder_task = ? ORDER BY token",
            (task_id,)).fetchall())
        return [_lock(r) for r in rows]

    async def last_token(self) -> int:
        row = await self.store.read(lambda c: c.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'resource_locks'").fetchone())
        return int(row[0]) if row else 0

    async def snapshot(self) -> tuple[float, list[LockRow], list[WaiterRow]]:
        return await self.store.read(read_snapshot)

    async def recent_deadlocks(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last deadlocks recorded in the event log (newest first)."""
        return await self.store.read(lambda c: read_deadlocks(c, limit))

    # the shared scratchpad ------------------------------------------------
    async def kv_get(self, key: str) -> KVEntry | None:
        row = await self.store.read(lambda c: c.execute(
            "SELECT key, value, version, updated_at, updated_by FROM kv_entries WHERE key = ?",
            (key,)).fetchone())
        if row is None:
            return None
        return KVEntry(row[0], json.loads(row[1]), row[2], row[3], row[4])

    async def kv_set(self, key: str, value: object, updated_by: str,
                     fence: tuple[int, str] | None = None) -> KVEntry:
        """Set a shared value; with ``fence`` (token, task), only while that lock is the
        task's and live, checked in the write's own transaction."""
        encoded = json.dumps(value)

        def op(conn: sqlite3.Connection) -> KVEntry:
            if fence is not None:
                _check_fence(conn, fence[0], fence[1], f"kv:{key}")
            now = store_now(conn)
            row = conn.execute(
                "INSERT INTO kv_entries (key, value, version, updated_at, updated_by) "
                "VALUES (?, ?, 1, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "version = kv_entries.version + 1, updated_at = excluded.updated_at, "
                "updated_by = excluded.updated_by RETURNING version",
                (key, encoded, now, updated_by)).fetchone()
            return KVEntry(key, value, row[0], now, updated_by)

        result: KVEntry = await self.store.write(op)
        return result

    async def kv_delete(self, key: str) -> bool:
        deleted = await self.store.write(lambda c: c.execute(
            "DELETE FROM kv_entries WHERE key = ?", (key,)).rowcount)
        return bool(deleted)


def read_snapshot(conn: sqlite3.Connection) -> tuple[float, list[LockRow], list[WaiterRow]]:
    """Every lock (lapsed ones included) and every live wait, with the store's time."""
    now = store_now(conn)
    locks = [_lock(r) for r in conn.execute(
        f"SELECT {_LOCK_COLUMNS} FROM resource_locks ORDER BY resource, token").fetchall()]
    waiters = [_waiter(r) for r in conn.execute(
        f"SELECT {_WAITER_COLUMNS} FROM resource_waiters WHERE alive_until > ? ORDER BY id",
        (now,)).fetchall()]
    return now, locks, waiters


def read_deadlocks(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT ts, agent, task_id, data FROM events WHERE type = "
                        "'resource.deadlock' ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [{"ts": r[0], "agent": r[1], "task_id": r[2], **json.loads(r[3])} for r in rows]
